"""Corked: a turn's writes go out as one send, in order, and never more than CORK_BYTES held."""

from __future__ import annotations

import asyncio
from typing import Any

from app import worker
from app.worker import CORK_BYTES, Corked


class Transport:
    """Records what reaches the socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def corked() -> tuple[Transport, Corked, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    transport = Transport()
    return transport, Corked(transport, loop), loop  # type: ignore[arg-type]


def next_turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_a_head_and_its_body_go_out_as_one_send_at_the_end_of_the_turn() -> None:
    transport, cork, loop = corked()
    cork.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    cork.write(bytearray(b"{}"))
    assert transport.sent == [] and cork.get_write_buffer_size() == 45
    next_turn(loop)
    assert transport.sent == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    next_turn(loop)
    assert len(transport.sent) == 1 and cork.get_write_buffer_size() == 0
    loop.close()


def test_never_more_than_cork_bytes_held_and_the_order_kept() -> None:
    transport, cork, loop = corked()
    cork.write(b"head")
    part = b"x" * (CORK_BYTES - 2)
    cork.write(part)  # held would pass the bound: both go now
    assert transport.sent == [b"head" + part]
    cork.write(b"y" * CORK_BYTES)  # a big write with nothing held goes as is
    cork.write(b"tail")
    assert transport.sent == [b"head" + part, b"y" * CORK_BYTES]
    next_turn(loop)
    assert transport.sent[-1] == b"tail"
    loop.close()


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    transport, cork, loop = corked()
    cork.write(b"last answer")
    cork.close()
    assert transport.sent == [b"last answer"] and transport.closed
    next_turn(loop)
    assert transport.sent == [b"last answer"]  # not twice
    transport, cork, loop2 = corked()
    cork.write(b"dropped")
    cork.abort()
    next_turn(loop2)
    assert transport.sent == [] and transport.aborted
    assert cork.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's
    loop.close()
    loop2.close()


def test_the_turns_metrics_are_written_before_its_answers_are_sent(monkeypatch) -> None:
    """A scrape that follows an answer counts it (app/metrics.py): the worker's hook runs before
    every write that reaches the socket, the held turn's and a big write's alike."""
    transport, cork, loop = corked()
    sent_at_hook: list[int] = []
    monkeypatch.setattr(worker, "_before_send", lambda: sent_at_hook.append(len(transport.sent)))
    cork.write(b"HTTP/1.1 201 Created\r\n\r\n")
    next_turn(loop)
    cork.write(b"x" * CORK_BYTES)  # goes as is
    cork.write(b"tail")
    cork.close()
    assert transport.sent == [b"HTTP/1.1 201 Created\r\n\r\n", b"x" * CORK_BYTES, b"tail"]
    assert sent_at_hook[:3] == [0, 1, 2]  # each time, before the write it precedes
    loop.close()
