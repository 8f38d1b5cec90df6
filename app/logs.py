"""The lottery's log lines, in the course's format: ``action: X | result: Y | key: value``.

A line per stored chunk is thousands of lines a second when terminals send one bet per
request (issue 22), and a write to stderr per line cost 30 to 40 µs of a worker's ~340 µs of
CPU per request (measured A/B, docs/performance.md). So a line logged with ``extra=BATCHED``
(the chunk lines) waits up to ``BATCH_SECONDS`` and is written together with the lines logged
meanwhile, in one write. Any other line is written at once, after the waiting ones, so the
order is kept and a draw, a repair or an error is never late. A worker that exits writes what waits; one killed outright
loses at most ``BATCH_SECONDS`` of chunk lines (the chunks themselves are on disk).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"

BATCHED = {"batched": True}  # ``log.info(..., extra=BATCHED)``: this line may wait for the next write
BATCH_SECONDS = 0.05
BATCH_LINES = 256  # written at once when this many wait (one write of a few tens of KB)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours: added once however many apps the process builds; it gathers batched lines."""

    def __init__(self, stream: TextIO, delay: float = BATCH_SECONDS):
        super().__init__(stream)
        self.delay = delay
        self._waiting: list[str] = []
        assert self.lock is not None  # made by Handler.__init__
        self._due = threading.Condition(self.lock)  # the handler's own lock: emit holds it already
        self._writer: threading.Thread | None = None  # started at the first batched line (a fork's child: anew)
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock (Handler.handle)
        try:
            line = self.format(record) + self.terminator
            if getattr(record, "batched", False):
                self._waiting.append(line)
                if len(self._waiting) >= BATCH_LINES:
                    self._write()
                elif len(self._waiting) == 1:
                    self._wake_writer()
            else:
                self._waiting.append(line)
                self._write()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self._due:
            if self._waiting:
                self._write()
        super().flush()

    def _write(self) -> None:
        lines, self._waiting = self._waiting, []
        self.stream.write("".join(lines))
        self.stream.flush()

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_late, name="log-writer", daemon=True)
            self._writer.start()
        self._due.notify()

    def _write_late(self) -> None:
        """The writer thread: waiting lines go out ``delay`` seconds after the first of them."""
        with self._due:
            while True:
                self._due.wait_for(lambda: bool(self._waiting))
                self._due.wait(self.delay)  # lines logged meanwhile join this write
                if self._waiting:
                    try:
                        self._write()
                    except Exception:  # a closed or broken stderr: as logging does, never raise
                        self._waiting = []

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent writes its own waiting lines; the child starts empty,
        with a condition of its own (the parent's may list its writer thread as a waiter)."""
        assert self.lock is not None
        self._waiting = []
        self._writer = None
        self._due = threading.Condition(self.lock)


_handlers: weakref.WeakSet[_Handler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_handlers):
        handler._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


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


def spare_record_fields() -> None:
    """In a server worker: log records without the caller's frame, thread and process name, which
    no format in the worker prints (gunicorn's prints the process id: that one stays); the logging
    HOWTO's "Optimization" section names these switches. A chunk line costs about a third less
    (issue 22). Not in tests, whose log capture prints the caller's file and line."""
    logging._srcfile = None  # the documented switch for findCaller
    logging.logThreads = False
    logging.logMultiprocessing = False


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
