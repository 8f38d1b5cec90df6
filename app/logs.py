"""The lottery's log lines, in the course's format: ``action: X | result: Y | key: value``."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class _Handler(logging.StreamHandler[TextIO]):
    """Ours: added once however many apps the process builds."""


def configure(level: str) -> logging.Logger:
    """Send the ``lottery`` logger to stderr once per process (gunicorn collects it)."""
    logger = logging.getLogger("lottery")
    logger.setLevel(level)
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        logger.addHandler(handler)
        logger.propagate = False
    return logger
