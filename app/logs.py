"""The lottery's log lines, in the course's format: ``action: X | result: Y | key: value``."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


def configure(level: str) -> logging.Logger:
    """Send the ``lottery`` logger to stderr once per process (gunicorn collects it)."""
    logger = logging.getLogger("lottery")
    logger.setLevel(level)
    if not any(getattr(h, "_lottery", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        handler._lottery = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger
