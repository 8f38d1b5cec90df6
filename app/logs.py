"""The lottery's log lines, in the course's format: ``action: X | result: Y | key: value``."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class _Handler(logging.StreamHandler[TextIO]):
    """Ours: added once however many apps the process builds."""


class _Formatter(logging.Formatter):
    """The course's format, with the time text made once per second instead of once per line
    (a line per request: thousands a second under one-bet uploads, issue 22)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:
            self._text, self._second = super().formatTime(record, datefmt), second
        return self._text


def configure(level: str) -> logging.Logger:
    """Send the ``lottery`` logger to stderr once per process (gunicorn collects it)."""
    logger = logging.getLogger("lottery")
    logger.setLevel(level)
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(_Formatter(FORMAT, DATEFMT))
        logger.addHandler(handler)
        logger.propagate = False
    return logger
