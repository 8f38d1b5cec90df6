"""A real gunicorn that must refuse to start (bad settings), and what it said."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from devtools.server import Server


class Refused(NamedTuple):
    lines: list[str]  # the log's "invalid setting" lines
    log: str


def refused_start(data_dir: Path, env: dict[str, str], *, workers: int = 1, agencies: int = 1) -> Refused:
    """Start gunicorn with ``env``; it must exit before serving. Its log, and the lines naming the setting."""
    server = Server(data_dir, workers=workers, agencies=agencies, env=env)
    with pytest.raises(RuntimeError):  # Server.start: "gunicorn exited with ..." and the log
        server.start(timeout=20)
    server.stop()
    log = server.log()
    return Refused([line for line in log.splitlines() if "invalid setting" in line], log)
