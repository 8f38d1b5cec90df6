"""SIGTERM and Ctrl-C at any point of a command: the uploader ends with one clear line, never a traceback.

Found by the upload model (tests/integration/test_upload_model.py): a SIGTERM that arrived while
the uploader was logging a rejected chunk raised KeyboardInterrupt inside that ``except`` block,
and the process died with a traceback. Here the signals are sent to this process at generated
points of a real ``client.__main__.main`` call: while the command runs, and while its outcome is
being reported.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import client.commands.winners
from client.__main__ import main
from client.config import ConfigError
from client.http import ClientError, Stopped

ARGV = ["winners", "--agency", "1", "--server", "http://127.0.0.1:9"]

# What the command does at its end, the exit code main() answers for it, and the line that says so.
OUTCOMES = {
    "returns": (0, None),
    "rejected": (1, "action: winners | result: fail | error: refused"),
    "bad option": (2, "error: bad option"),
    "stopped": (128 + signal.SIGINT, "action: winners | result: interrupted | signal: SIGINT"),
}


def end(outcome: str) -> int:
    if outcome == "rejected":
        raise ClientError("refused")
    if outcome == "bad option":
        raise ConfigError("bad option")
    if outcome == "stopped":
        raise Stopped()
    return 0


class SignalsWhileWriting:
    """A stderr that sends this process the next of its signals as each line is written."""

    def __init__(self, signals: list[int]) -> None:
        self.signals = list(signals)
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        if self.signals:
            os.kill(os.getpid(), self.signals.pop(0))
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    outcome=st.sampled_from(sorted(OUTCOMES)),
    during_command=st.sampled_from([None, signal.SIGTERM, signal.SIGINT]),
    during_unwinding=st.sampled_from([None, signal.SIGTERM, signal.SIGINT]),
    while_reporting=st.lists(st.sampled_from([signal.SIGTERM, signal.SIGINT]), max_size=3),
)
def test_a_signal_at_any_point_ends_the_command_with_one_clear_line(
    monkeypatch,
    restore_handlers,
    outcome: str,
    during_command: int | None,
    during_unwinding: int | None,
    while_reporting: list[int],
) -> None:
    assert threading.current_thread() is threading.main_thread()  # where Python runs signal handlers

    def command(options, stop: threading.Event) -> int:
        if during_command is not None:
            try:
                os.kill(os.getpid(), during_command)
                stop.wait(5)  # the handler runs here (a call): KeyboardInterrupt unwinds the command
                raise AssertionError("the signal did not stop the command")
            finally:  # a clean-up that hangs (a chunk in flight): another signal unwinds it too
                if during_unwinding is not None:
                    os.kill(os.getpid(), during_unwinding)
                    stop.wait(5)
        return end(outcome)

    monkeypatch.setattr(client.commands.winners, "main", command)
    stderr = SignalsWhileWriting(while_reporting)
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("client")
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(sys, "stderr", stderr)

    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        code = main(ARGV)
    except KeyboardInterrupt:  # pytest would take it as its own Ctrl-C and stop the session
        pytest.fail(f"KeyboardInterrupt escaped main(); stderr so far: {stderr.text!r}")
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers  # pytest's Ctrl-C is back

    if during_command is not None:
        last = during_command if during_unwinding is None else during_unwinding
        name = signal.Signals(last).name
        assert code == 128 + last
        resume = "rerun the same command to resume"
        assert stderr.text == f"action: winners | result: interrupted | signal: {name} | {resume}\n"
    else:
        expected_code, line = OUTCOMES[outcome]
        assert code == expected_code
        if line is None:
            assert stderr.text == ""
        else:
            assert stderr.text.startswith(line)
            assert stderr.text.count("\n") == 1
