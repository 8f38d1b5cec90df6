"""Start a real ``gunicorn -c gunicorn.conf.py`` on a free loopback port, and stop it.

Used by ``make demo``, the integration and fault tests and the benchmarks, so that all of
them run the server exactly as production does (same config file, several workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are chosen (ports chosen
    one at a time may repeat: the kernel can hand a just-closed one out again)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class Server:
    """One gunicorn master with ``workers`` uvicorn workers; stderr goes to ``log_path``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 3,
        agencies: int = 5,
        port: int | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        open_files: int | None = None,
    ):
        self.data_dir = Path(data_dir)
        # The server's soft open-file limit (`ulimit -n`), set on its process alone by util-linux's
        # prlimit: lowering the caller's own would also cap the caller's files and sockets.
        self.open_files = open_files
        self.workers = workers
        self.port = port or free_port()
        # HTTPS when the server is given a certificate; ``verify`` (a CA file) checks it.
        scheme = "https" if (env or {}).get("LOTTERY_TLS_CERT") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.verify = verify
        self.log_path = log_path or self.data_dir.parent / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "LOTTERY_DATA_DIR": str(self.data_dir),
            "LOTTERY_AGENCIES": str(agencies),
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} --workers {workers}",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()  # a restart appends: count only this run's lines
        limit = [] if self.open_files is None else ["prlimit", f"--nofile={self.open_files}:", "--"]
        self.proc = subprocess.Popen(
            [*limit, sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /health answers 200 and every worker has loaded the app (each opens the store)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if (
                    httpx.get(self.url + "/health", timeout=1, verify=self.verify).status_code == 200
                    and self._booted() >= self.workers
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def _booted(self) -> int:
        # Not "Booting worker": gunicorn logs that before the worker has loaded the app.
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().count(b"Application startup complete.")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the master (SIGTERM: graceful) and wait; SIGKILL takes the whole group down."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no orphaned worker may outlive its master
        self._log.close()
        code, self.proc = self.proc.returncode, None
        return code

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
