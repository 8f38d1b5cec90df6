"""``make demo``: a whole lottery round on generated data, start to finish, on loopback.

Generates five agency files, starts gunicorn (3 workers) on a free port with a temporary
data dir, runs five uploaders at once as separate programs, shows each agency's winners
and the draw, stops the server (``--keep``, or ``make demo KEEP=1``: after the round, keeps
it up until Ctrl-C, for a look at the operator's page).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from client.generate import generate
from devtools.server import Server

AGENCIES = 5
BETS_PER_AGENCY = 20_000


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)  # `make demo KEEP=1`
    with tempfile.TemporaryDirectory(prefix="lottery-demo-") as tmp:
        work = Path(tmp)
        files = generate(work / "agencies", AGENCIES, BETS_PER_AGENCY, seed=1)
        print(f"Generated {AGENCIES} agency files with {BETS_PER_AGENCY:,} bets each in {work / 'agencies'}")
        server = Server(work / "data", workers=3, agencies=AGENCIES, log_path=work / "server.log")
        with server:
            print(f"Server up at {server.url} (gunicorn, 3 workers, data in {server.data_dir})")
            print(f"Operator page: {server.url}/  (the round live; API docs at {server.url}/docs)\n")
            started = time.monotonic()
            uploaders = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "client",
                        "run",
                        "--agency",
                        str(agency),
                        "--file",
                        str(path),
                        "--server",
                        server.url,
                        "--json",
                        "--quiet",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for agency, path in enumerate(files, 1)
            ]
            results = [p.communicate(timeout=120) + (p.returncode,) for p in uploaders]
            elapsed = time.monotonic() - started
            failed = False
            for agency, (out, err, code) in enumerate(results, 1):
                if code != 0:
                    failed = True
                    print(f"agency {agency}: FAILED (exit {code})\n{err}")
                    continue
                winners = json.loads(out)["winners"]  # what the uploader itself printed
                print(f"agency {agency}: {len(winners)} winner(s) {', '.join(winners) or '-'}")
            status = httpx.get(f"{server.url}/status").json()
            draws = [line for line in server.log().splitlines() if "action: sorteo" in line]
            if keep:
                print(f"\nThe server stays up for a look: {server.url}/  (Ctrl-C stops it)", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    server.proc.wait()
        print(
            f"\nRound: {status['bets']:,} bets from {len(status['done'])}/{status['expected']} agencies "
            f"in {elapsed:.1f}s; drawn: {status['drawn']}"
        )
        print("Draw log:", *draws, sep="\n  ")
        return 1 if failed or not status["drawn"] or len(draws) != 1 else 0


if __name__ == "__main__":
    sys.exit(main())
