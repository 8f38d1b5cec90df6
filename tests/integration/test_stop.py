"""Stopping gunicorn (issue 25.13): a signal to the master alone stops every worker within a
few seconds, and no stop logs a false alarm.

SIGINT or SIGQUIT to the master is gunicorn's "quick shutdown": it sends SIGQUIT to the
workers, which the uvicorn worker took as a flag nobody read, so the master waited its
graceful_timeout (30 s) and then SIGKILLed them ("Perhaps out of memory?"). And every stop
logged ``Error while closing socket [Errno 9]``: uvloop closes a listening socket itself,
then closed gunicorn's wrapper of it once more.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from devtools.server import Server

QUICK = 5.0  # seconds; an idle server stops in well under one
FALSE_ALARMS = ("SIGKILL", "Perhaps out of memory", "Error while closing socket", "Traceback")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_to_the_master_alone_stops_every_worker_quickly_and_quietly(tmp_path: Path, sig: int) -> None:
    server = Server(tmp_path / "data", workers=2, agencies=1).start()
    workers = server.worker_pids()
    assert len(workers) == 2
    started = time.monotonic()
    server.proc.send_signal(sig)  # the master only, not its process group (what Ctrl-C would reach)
    try:
        server.proc.wait(QUICK)
    finally:
        elapsed = time.monotonic() - started
        server.stop()
    log = server.log()
    assert elapsed < QUICK, log
    assert [alarm for alarm in FALSE_ALARMS if alarm in log] == [], log
    assert log.count("Application shutdown complete.") == 2, log  # each worker closed its store
