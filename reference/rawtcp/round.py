"""Run and time one lottery round of the raw-TCP reference implementation.

Starts :mod:`reference.rawtcp.server` on an ephemeral 127.0.0.1 port, launches one
:mod:`reference.rawtcp.agency` process per bets file all at once, waits for them,
stops the server and reports::

    {"seconds": <launch of the agencies -> exit of the last one>,
     "winners": {agency: count}, "rows": <rows in bets.csv>}

Command line::

    python -m reference.rawtcp.round --dataset DIR [--data-dir OUT]

where DIR holds ``agency-<K>.csv`` files (K = 1..N). Logs of the server and of
each agency are kept in ``<data dir>/logs/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from reference.rawtcp.server import BETS_FILE

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 15.0
ROUND_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0

_WINNERS_RE = re.compile(rb"action: consulta_ganadores \| result: success \| cant_ganadores: (\d+)")
_FILE_RE = re.compile(r"agency-(\d+)\.csv")


class RoundError(RuntimeError):
    """The round did not complete correctly (server or agency failure, timeout)."""


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-limit:].decode("utf-8", "replace").strip() or "<empty>"


def _child_env() -> dict[str, str]:
    """Environment for the subprocesses: make ``reference`` and ``app`` importable from any cwd."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _wait_for_port(server: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RoundError(f"server exited with {server.returncode} before listening:\n{_tail(log)}")
        try:
            text = port_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise RoundError(f"server did not listen within {SERVER_START_TIMEOUT} s:\n{_tail(log)}")


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait until every process exited, or until one exits non-zero (the round cannot
    complete then: the others would poll for a draw that never comes).

    Raises subprocess.TimeoutExpired after ``timeout``. Uses pidfds (Linux >= 5.3)
    so each exit is seen at once: Popen.wait(timeout) polls with sleeps of up to
    50 ms, which would blur the measured wall time.
    """
    deadline = time.monotonic() + timeout
    pidfds: dict[int, subprocess.Popen[bytes]] = {}
    try:
        try:
            for proc in procs:
                pidfds[os.pidfd_open(proc.pid)] = proc
        except (AttributeError, OSError):  # no pidfd support: poll instead
            _poll_all(procs, deadline, timeout)
            return
        poller = select.poll()
        for fd in pidfds:
            poller.register(fd, select.POLLIN)
        pending = set(pidfds)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired([p.args for p in procs], timeout)
            for fd, _event in poller.poll(left * 1000):
                poller.unregister(fd)
                pending.discard(fd)
                if pidfds[fd].wait(timeout=STOP_TIMEOUT) != 0:  # already exited: reaps at once
                    return
    finally:
        for fd in pidfds:
            os.close(fd)


def _poll_all(procs: list[subprocess.Popen[bytes]], deadline: float, timeout: float) -> None:
    """Fallback of :func:`_wait_all` without pidfds (coarser: 5 ms polling)."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes) or any(c for c in codes):
            return
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired([p.args for p in procs], timeout)
        time.sleep(0.005)


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=STOP_TIMEOUT)


def count_rows(bets: Path) -> int:
    with open(bets, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f))


def run_round(
    files: dict[int, Path],
    data_dir: Path,
    *,
    python: str = sys.executable,
    timeout: float = ROUND_TIMEOUT,
) -> dict:
    """Run one round with ``files[k]`` uploaded by agency ``k`` (k = 1..N); see module doc."""
    ids = sorted(files)
    if not ids or ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"agency ids must be 1..N, got {ids}")
    data_dir = Path(data_dir)
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _child_env()
    port_file = logs / "server.port"
    port_file.unlink(missing_ok=True)
    server_log = logs / "server.log"

    agencies: dict[int, subprocess.Popen[bytes]] = {}
    with ExitStack() as stack:
        server = subprocess.Popen(
            [python, "-m", "reference.rawtcp.server", "--host", HOST, "--port", "0",
             "--data-dir", str(data_dir), "--agencies", str(len(ids)), "--port-file", str(port_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stack.enter_context(open(server_log, "wb")),
            env=env,
        )  # fmt: skip
        try:
            port = _wait_for_port(server, port_file, server_log)
            started = time.perf_counter()
            for k in ids:
                agencies[k] = subprocess.Popen(
                    [python, "-m", "reference.rawtcp.agency", "--host", HOST, "--port", str(port),
                     "--agency", str(k), "--file", str(files[k]), "--timeout", str(timeout)],
                    stdin=subprocess.DEVNULL,
                    stdout=stack.enter_context(open(logs / f"agency-{k}.out", "wb")),
                    stderr=stack.enter_context(open(logs / f"agency-{k}.err", "wb")),
                    env=env,
                )  # fmt: skip
            try:
                _wait_all(list(agencies.values()), timeout)
            except subprocess.TimeoutExpired:
                raise RoundError(f"agencies did not finish within {timeout} s:\n{_tail(server_log)}") from None
            seconds = time.perf_counter() - started
        finally:
            for proc in agencies.values():  # only left running after an error
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT)
            _stop_server(server)

    failed = {k: p.returncode for k, p in agencies.items() if p.returncode != 0}
    if failed:
        details = "\n".join(
            f"agency {k}: killed after another agency failed" if rc == -signal.SIGKILL
            else f"agency {k} exited {rc}: {_tail(logs / f'agency-{k}.err')}"
            for k, rc in failed.items()
        )  # fmt: skip
        raise RoundError(f"{len(failed)} agency process(es) failed:\n{details}\nserver log:\n{_tail(server_log)}")
    if server.returncode != 0:
        raise RoundError(f"server exited with {server.returncode}:\n{_tail(server_log)}")

    winners: dict[int, int] = {}
    for k in ids:
        match = _WINNERS_RE.search((logs / f"agency-{k}.out").read_bytes())
        if match is None:
            raise RoundError(f"agency {k} printed no winners line")
        winners[k] = int(match.group(1))
    return {"seconds": seconds, "winners": winners, "rows": count_rows(data_dir / BETS_FILE)}


def dataset_files(dataset: Path) -> dict[int, Path]:
    """Map agency id -> file for the ``agency-<K>.csv`` files in ``dataset``."""
    files = {int(m.group(1)): p for p in dataset.iterdir() if (m := _FILE_RE.fullmatch(p.name))}
    if not files:
        raise ValueError(f"no agency-<K>.csv files in {dataset}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.rawtcp.round", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="directory with agency-<K>.csv files")
    parser.add_argument("--data-dir", type=Path, help="server data dir (default: a temporary one, removed after)")
    parser.add_argument("--timeout", type=float, default=ROUND_TIMEOUT, help="seconds")
    args = parser.parse_args(argv)
    files = dataset_files(args.dataset)
    if args.data_dir is not None:
        result = run_round(files, args.data_dir, timeout=args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="rawtcp-round-") as tmp:
            result = run_round(files, Path(tmp), timeout=args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
