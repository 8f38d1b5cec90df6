"""``make demo``: two lottery rounds on generated data, start to finish, on loopback.

Generates five agency files, starts gunicorn (3 workers) on a free port with a new data
dir, runs five uploaders at once as separate programs and shows their log lines as they
come (the course's format, each prefixed with its agency), then each agency's winners and
the draw. Then, as an operator would, it opens round 2 (three agencies, a random winning
number drawn at the draw), runs its three uploaders, and lists both rounds: round 1 kept
whole. The data dir, the agency files and the server log are kept, and their paths
printed. With ``--keep`` (``make demo KEEP=1``) the server stays up after the round, until
Ctrl-C, so the round can be looked at in the browser (the operator's page at ``/``, ``/docs``) or with curl.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from client.generate import generate
from devtools.server import Server

AGENCIES = 5
BETS_PER_AGENCY = 20_000
WORKERS = 3
ROUND_2 = {"agencies": 3, "winning_number": "random"}  # what the operator opens round 2 with
ROUND_2_BETS = 30_000  # per agency: every number 0..9999 a few times, so the random draw has winners


def relay(agency: int, stream, lock: threading.Lock) -> None:
    """Print an uploader's stderr lines (its course-style log) as they come, tagged with its agency."""
    for line in stream:
        with lock:
            print(f"  agency {agency} | {line.rstrip()}", flush=True)


def run_uploaders(server: Server, files: list[Path]) -> list[tuple[str, int]]:
    """Run one uploader per agency at once; their (stdout, exit code), in agency order.

    One reader per stream: a thread relays each stderr, another collects each stdout, and the
    process is only waited for. (``communicate()`` would read stderr too, and every line would
    go to whichever reader got it first: lines vanished from the screen.)
    """
    lock = threading.Lock()
    uploaders = []
    readers = []
    outputs: list[list[str]] = []
    for agency, path in enumerate(files, 1):
        command = [sys.executable, "-m", "client", "run", "--agency", str(agency), "--file", str(path)]
        process = subprocess.Popen(
            [*command, "--server", server.url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: list[str] = []
        readers += [
            threading.Thread(target=relay, args=(agency, process.stderr, lock), daemon=True),
            threading.Thread(target=lambda stream=process.stdout, into=out: into.append(stream.read()), daemon=True),
        ]
        readers[-2].start()
        readers[-1].start()
        uploaders.append(process)
        outputs.append(out)
    codes = [p.wait(timeout=300) for p in uploaders]
    for thread in readers:
        thread.join(timeout=5)  # each ends at its stream's end, when its uploader exits
    for p in uploaders:
        p.stdout.close()
        p.stderr.close()
    return [("".join(out), code) for out, code in zip(outputs, codes, strict=True)]


def show_round(server: Server, results: list[tuple[str, int]], elapsed: float, round_id: int) -> bool:
    """Each agency's winners and the round's figures; False when an uploader failed."""
    ok = True
    for agency, (out, code) in enumerate(results, 1):
        if code != 0:
            ok = False
            print(f"agency {agency}: FAILED (exit {code}); its log lines are above")
            continue
        winners = sorted(json.loads(out)["winners"])  # what the uploader itself printed, in a stable order
        shown = ", ".join(winners[:8]) + (f" and {len(winners) - 8} more" if len(winners) > 8 else "")
        print(f"agency {agency}: {len(winners)} winner(s) {shown or '-'}")
    info = httpx.get(f"{server.url}/rounds/{round_id}").json()
    number = info["winning_number"] if not info["random"] else f"{info['winning_number']} (drawn at random)"
    print(
        f"\nRound {round_id}: {info['bets']:,} bets from {info['done_count']}/{info['agencies']} agencies "
        f"in {elapsed:.1f}s; {info['state']}, winning number {number}, {info['winners']} winner(s)"
    )
    return ok and info["state"] == "drawn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Two lottery rounds on generated data.")
    parser.add_argument("--keep", action="store_true", help="keep the server up after the round, until Ctrl-C")
    args = parser.parse_args(argv)
    # Stopped by a signal, the demo still stops its server (gunicorn runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    work = Path(tempfile.mkdtemp(prefix="lottery-demo-"))  # kept: the round can be looked at afterwards
    files = generate(work / "agencies", AGENCIES, BETS_PER_AGENCY, seed=1)
    print(f"Generated {AGENCIES} agency files with {BETS_PER_AGENCY:,} bets each in {work / 'agencies'}")
    server = Server(work / "data", workers=WORKERS, agencies=AGENCIES, log_path=work / "server.log")
    with server:
        print(f"Server up at {server.url} (gunicorn, {WORKERS} workers, data in {server.data_dir})")
        print(f"Operator page: {server.url}/  (the round live; API docs at {server.url}/docs)")
        print("Uploaders' log lines (stderr of `python -m client run`), as they come:\n")
        started = time.monotonic()
        results = run_uploaders(server, files)
        print()
        ok = show_round(server, results, time.monotonic() - started, 1)

        print(f"\nThe operator opens round 2: POST /rounds {json.dumps(ROUND_2)}")
        opened = httpx.post(f"{server.url}/rounds", json=ROUND_2)
        print(f"  {opened.status_code} {opened.text}")
        files_2 = generate(work / "round-2", ROUND_2["agencies"], ROUND_2_BETS, seed=2)
        print(f"Generated {ROUND_2['agencies']} agency files with {ROUND_2_BETS:,} bets each in {work / 'round-2'}\n")
        started = time.monotonic()
        results = run_uploaders(server, files_2)
        print()
        ok = show_round(server, results, time.monotonic() - started, 2) and ok

        rounds = httpx.get(f"{server.url}/rounds").json()["rounds"]
        print("\nGET /rounds (newest first; round 1 is kept whole):")
        for r in rounds:
            print(
                f"  round {r['round']}: {r['state']}, {r['bets']:,} bets, {r['winners']} winner(s), "
                f"drawn {r['drawn_at']}"
            )
        draws = [line for line in server.log().splitlines() if "action: sorteo" in line]
        print("Draw log:", *draws, sep="\n  ")
        print(f"\nKept for a look: data in {server.data_dir}, server log {server.log_path},")
        print(f"  agency files in {work / 'agencies'} (delete {work} when done)")
        if args.keep:
            keep_serving(server)
    return 0 if ok and opened.status_code == 201 and len(draws) == 2 else 1


def keep_serving(server: Server) -> None:
    print(f"\nThe server stays up at {server.url} (docs: {server.url}/docs). Ctrl-C stops it.", flush=True)
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping the server.")
    else:
        print("The server exited; its log is kept.")


if __name__ == "__main__":
    sys.exit(main())
