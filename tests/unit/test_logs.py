"""The log handler: chunk lines gathered into one write, every other line at once, in order."""

from __future__ import annotations

import io
import logging
import os
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import logs


class Stream(io.StringIO):
    """Records each write (the handler's one write per batch) and says when one came."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.wrote = threading.Event()

    def write(self, text: str) -> int:
        self.writes.append(text)
        self.wrote.set()
        return len(text)


@pytest.fixture
def logger() -> tuple[logging.Logger, Stream, logs._Handler]:
    stream = Stream()
    handler = logs._Handler(stream, delay=0.01)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger("test-logs")  # not registered: nothing else writes here
    log.addHandler(handler)
    return log, stream, handler


def test_batched_lines_wait_and_go_out_together_in_order(logger) -> None:
    log, stream, handler = logger
    with handler.lock:  # the writer thread waits for it: nothing is written before all three are logged
        for n in range(3):
            log.info("chunk %d", n, extra=logs.BATCHED)
        assert stream.writes == []
    assert stream.wrote.wait(5)
    assert stream.writes == ["chunk 0\nchunk 1\nchunk 2\n"]


def test_any_other_line_is_written_at_once_after_the_waiting_ones(logger) -> None:
    log, stream, handler = logger
    with handler.lock:
        log.info("chunk 1", extra=logs.BATCHED)
        log.info("chunk 2", extra=logs.BATCHED)
        log.warning("draw")
        assert stream.writes == ["chunk 1\nchunk 2\ndraw\n"]  # written before the writer could run


def test_a_full_batch_is_written_without_waiting(logger) -> None:
    log, stream, handler = logger
    with handler.lock:
        for n in range(logs.BATCH_LINES):
            log.info("%d", n, extra=logs.BATCHED)
        assert stream.writes == ["".join(f"{n}\n" for n in range(logs.BATCH_LINES))]


def test_flush_writes_what_waits(logger) -> None:
    log, stream, handler = logger
    log.info("chunk", extra=logs.BATCHED)
    handler.flush()  # what logging.shutdown does at a worker's exit
    assert "".join(stream.writes) == "chunk\n"
    handler.flush()
    assert "".join(stream.writes) == "chunk\n"  # written once


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_never_writes_its_parents_waiting_lines(tmp_path) -> None:
    path = tmp_path / "log"
    with open(path, "a", buffering=1) as out:
        handler = logs._Handler(out, delay=60)  # the writer never writes by itself in this test
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.Logger("test-fork")
        log.addHandler(handler)
        log.info("parent's chunk", extra=logs.BATCHED)
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's exit status is the assertion
            code = 1
            try:
                log.warning("child's line")
                handler.delay = 0.01
                for n in (1, 2):  # written by the child's own writer thread, each in turn
                    log.info("child's chunk %d", n, extra=logs.BATCHED)
                    deadline = time.monotonic() + 10
                    while f"child's chunk {n}" not in path.read_text() and time.monotonic() < deadline:
                        time.sleep(0.005)
                code = 0 if "child's chunk 2" in path.read_text() else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.flush()
    lines = path.read_text().splitlines()
    assert sorted(lines) == ["child's chunk 1", "child's chunk 2", "child's line", "parent's chunk"]


SPARED = r"""
import io, logging, os, sys
from gunicorn.glogging import Logger
from app import logs

logs.spare_record_fields()
out = io.StringIO()
logger = logs.configure("INFO")
logger.handlers[0].setStream(out)
logger.info("action: apuesta_recibida | result: success | cantidad: %d", 1)
record = logging.getLogger("gunicorn.error").makeRecord(
    "gunicorn.error", logging.INFO, "f", 1, "Booting worker", (), None
)
print(out.getvalue().split(" ", 2)[2].strip())
line = logging.Formatter(Logger.error_fmt).format(record)
print(line.split(" ", 2)[2] == f"[{os.getpid()}] [INFO] Booting worker")
print(logging._srcfile, record.threadName, record.processName)
"""


def test_a_worker_spares_the_record_fields_no_format_of_its_prints() -> None:
    """In a process of its own (the switches are global): the course's line and gunicorn's own
    (with the process id) come out whole; the caller's frame and the names are not looked up."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SPARED], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr == ""  # logging reports a format it cannot fill on stderr
    assert done.stdout.splitlines() == [
        "INFO     action: apuesta_recibida | result: success | cantidad: 1",
        "True",
        "None None None",
    ]


# -- info_batched: the chunk line without a LogRecord ---------------------------------------

MESSAGES = st.tuples(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="%"), max_size=40),
    st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=3),
)


def ours(stream: io.StringIO) -> tuple[logging.Logger, logs._Handler]:
    """A logger set up as logs.configure sets up a worker's, writing to ``stream``."""
    log = logging.Logger("test-info-batched")
    log.propagate = False
    handler = logs._Handler(stream, delay=60)
    handler.setFormatter(logs._Formatter(logs.FORMAT, logs.DATEFMT))
    log.addHandler(handler)
    return log, handler


@given(MESSAGES)
def test_info_batched_writes_what_logging_writes_without_making_a_record(message) -> None:
    text, numbers = message
    template = text + " %d" * len(numbers)
    via_logging, via_fast_path = io.StringIO(), io.StringIO()
    log, handler = ours(via_logging)
    log.info(template, *numbers, extra=logs.BATCHED)
    handler.flush()
    fast, fast_handler = ours(via_fast_path)
    fast.makeRecord = None  # type: ignore[assignment,method-assign]  # the fast path never calls it
    logs.info_batched(fast, template, *numbers)
    fast_handler.flush()
    line, expected = via_fast_path.getvalue(), via_logging.getvalue()
    # The time to the second: made twice, it may have ticked in between.
    assert line[19:] == expected[19:] == f" INFO     {template % tuple(numbers)}\n"
    assert abs(time.mktime(time.strptime(line[:19], logs.DATEFMT)) - time.time()) < 5


@pytest.mark.parametrize(
    "change",
    [
        "a filter on the handler",
        "a filter on the logger",
        "a second handler",
        "another format",
        "propagating",
        "WARNING",
    ],
)
def test_info_batched_is_loggings_own_call_wherever_the_setup_is_not_ours(change) -> None:
    out, other = io.StringIO(), io.StringIO()
    log, handler = ours(out)
    seen: list[logging.LogRecord] = []
    if change == "a filter on the handler":
        handler.addFilter(lambda record: seen.append(record) or False)  # drops every record
    elif change == "a filter on the logger":
        log.addFilter(lambda record: seen.append(record) or True)
    elif change == "a second handler":
        second = logging.StreamHandler(other)
        log.addHandler(second)
    elif change == "another format":
        handler.setFormatter(logs._Formatter("%(levelname)s %(message)s", logs.DATEFMT))
    elif change == "propagating":
        log.propagate = True
        log.parent = logging.Logger("test-parent")
        log.parent.addHandler(logging.StreamHandler(other))
    else:
        log.setLevel(logging.WARNING)
    logs.info_batched(log, "chunk %d", 7)
    handler.flush()
    written = out.getvalue()
    if change == "a filter on the handler":
        assert written == "" and [record.getMessage() for record in seen] == ["chunk 7"]
    elif change == "WARNING":
        assert written == ""
    elif change == "another format":
        assert written == "INFO chunk 7\n"
    else:
        assert written.endswith(" INFO     chunk 7\n")
        if change == "a filter on the logger":
            assert [record.getMessage() for record in seen] == ["chunk 7"]
        else:
            assert other.getvalue() == "chunk 7\n"


def test_info_batched_lines_wait_for_the_batch_like_any_batched_line() -> None:
    stream = Stream()
    log, handler = ours(stream)
    handler.delay = 0.01
    with handler.lock:
        logs.info_batched(log, "chunk %d", 1)
        log.info("chunk %d", 2, extra=logs.BATCHED)
        logs.info_batched(log, "chunk %d", 3)
        assert stream.writes == []
    assert stream.wrote.wait(5)
    assert [line[20:] for line in "".join(stream.writes).splitlines()] == [
        "INFO     chunk 1",
        "INFO     chunk 2",
        "INFO     chunk 3",
    ]


def test_info_batched_never_raises_on_a_message_its_arguments_do_not_fit(capsys) -> None:
    """As logging: the caller (a request) goes on; logging reports the bad call on stderr."""
    out = io.StringIO()
    log, handler = ours(out)
    logs.info_batched(log, "chunk %d", "seven")
    handler.flush()
    assert out.getvalue() == ""
    assert "Logging error" in capsys.readouterr().err
