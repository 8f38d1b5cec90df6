"""The lottery's log lines, in the course's format: ``action: X | result: Y | key: value``.

A line per stored chunk is thousands of lines a second when terminals send one bet per
request (issue 22), and a write to stderr per line cost 30 to 40 µs of a worker's ~340 µs of
CPU per request (measured A/B, docs/performance.md). So a line logged with ``extra=BATCHED``
(the chunk lines) waits up to ``BATCH_SECONDS`` and is written together with the lines logged
meanwhile, in one write. Any other line is written at once, after the waiting ones, so the
order is kept and a draw, a repair or an error is never late. A worker that exits writes what waits; one killed outright
loses at most ``BATCH_SECONDS`` of chunk lines (the chunks themselves are on disk).

Even so, making a LogRecord, passing it through the logger and handler and formatting it cost
a one-bet POST 20 to 25 µs of its ~200 (measured A/B, docs/performance.md). So the chunk lines
go through :func:`info_batched`: where the logger writes only to this module's handler, with
this module's format, the line is made from the message and the time alone, the same bytes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
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
                self._wait(line)
            else:
                self._waiting.append(line)
                self._write()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _wait(self, line: str) -> None:  # under self.lock
        self._waiting.append(line)
        if len(self._waiting) >= BATCH_LINES:
            self._write()
        elif len(self._waiting) == 1:
            self._wake_writer()

    def plain(self) -> _Formatter | None:
        """This handler's formatter, where a batched INFO line may skip the LogRecord: no filter,
        INFO let through, and the module's own format (None otherwise)."""
        formatter = self.formatter
        if type(formatter) is _Formatter and formatter.ours and not self.filters and self.level <= logging.INFO:
            return formatter
        return None

    def wait_line(self, line: str) -> None:
        """A batched line made by :func:`info_batched`; dropped, as logging would, if stderr fails."""
        with self._due:
            try:
                self._wait(line + self.terminator)
            except Exception:
                self._waiting = []

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

    @property
    def ours(self) -> bool:
        """The module's format and time format: what :meth:`line` makes."""
        return self._fmt == FORMAT and self.datefmt == DATEFMT and self.converter is time.localtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        if datefmt is None:
            return super().formatTime(record, datefmt)
        return self._time(record.created, datefmt)

    def _time(self, created: float, datefmt: str) -> str:
        second = int(created)
        if second != self._second:  # (strftime of whole seconds: the time text of every record in it)
            self._text, self._second = time.strftime(datefmt, self.converter(created)), second
        return self._text

    def line(self, levelname: str, message: str) -> str:
        """What ``format`` makes of a record of this level and message, made now (``ours`` only)."""
        return f"{self._time(time.time(), DATEFMT)} {levelname:<8} {message}"


def info_batched(logger: logging.Logger, message: str, *args: object) -> None:
    """``logger.info(message, *args, extra=BATCHED)``, made without a LogRecord where the logger
    writes only to this module's handler in its own format (a worker's ``lottery`` logger):
    the same line, at a fraction of the cost (issue 22). Anywhere else, that very call."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    if len(handlers) == 1 and not logger.propagate and not logger.filters:
        handler = handlers[0]
        if type(handler) is _Handler:
            formatter = handler.plain()
            if formatter is not None:
                try:
                    text = message % args if args else message
                except (TypeError, ValueError):  # a message its arguments do not fit: logging reports it
                    pass
                else:
                    handler.wait_line(formatter.line("INFO", text))
                    return
    logger.info(message, *args, extra=BATCHED)


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
