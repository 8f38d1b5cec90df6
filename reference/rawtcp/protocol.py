"""Wire protocol of the raw-TCP reference round.

Framing
-------
Every message travels as one *frame*::

    +---------------------------+-----------------------------+
    | length: 4 bytes, uint32,  | payload: ``length`` bytes   |
    | big-endian                |                             |
    +---------------------------+-----------------------------+

``length`` counts the payload only; it is at least 1 (the type tag) and at most
:data:`MAX_PAYLOAD` = 8192 bytes. A sender refuses to build a larger frame and a
receiver refuses a header announcing one, before reading the payload. Reads go
through :func:`recv_exact`, so TCP short reads never leak into the message layer;
writes use ``sendall`` (header and payload in a single call).

Messages
--------
The first payload byte is a type tag; the rest is the body.

====  ==============  ========================================================
tag   direction       body
====  ==============  ========================================================
H     agency→server   hello: the agency id, ASCII decimal. Always the first frame.
B     agency→server   batch of bets: UTF-8 CSV lines
                      ``first_name,last_name,document,birthdate,number``, each
                      ending in LF. Whole lines only: a line is never split
                      across frames (so records with embedded newlines are not
                      supported; our data has none).
D     agency→server   done: this agency sends no more batches. Empty body.
W     agency→server   winners query. Empty body.
A     server→agency   ack of H, B or D. For B it is sent only after the bets
                      are written *and* fsynced.
N     server→agency   not drawn yet: ask again later. Empty body.
P     server→agency   partial winners list, more P/R frames follow (only used
                      when the list does not fit in one frame).
R     server→agency   (last part of) this agency's winners: LF-separated
                      documents; an empty body means no winners.
E     server→agency   error: UTF-8 reason; the server then closes the connection.
====  ==============  ========================================================

A conversation is strictly stop-and-wait (one outstanding request)::

    H→A  (B→A)*  D→A  (W→N)*  W→(P)*R
"""

from __future__ import annotations

import socket
import struct

MAX_PAYLOAD = 8192
"""Largest payload (type tag included) a frame may carry, in bytes."""

_HEADER = struct.Struct("!I")

# Type tags (first payload byte).
HELLO = b"H"
BATCH = b"B"
DONE = b"D"
WINNERS = b"W"
ACK = b"A"
NOT_YET = b"N"
PARTIAL = b"P"
REPLY = b"R"
ERROR = b"E"


class ProtocolError(Exception):
    """The peer violated the framing or message rules."""


def encode_frame(payload: bytes) -> bytes:
    """Return header + payload; raise ValueError if the payload is empty or > 8 kB."""
    if not payload:
        raise ValueError("a frame payload needs at least the type tag")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(len(payload)) + payload


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame (a single ``sendall``, so no short writes)."""
    sock.sendall(encode_frame(payload))


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes; raise ConnectionError if the peer closes first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"peer closed the connection after {got} of {n} bytes")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes | None:
    """Read one frame's payload, or return None if the peer closed cleanly between frames."""
    first = sock.recv(_HEADER.size)
    if not first:
        return None
    if len(first) < _HEADER.size:
        first += recv_exact(sock, _HEADER.size - len(first))
    (length,) = _HEADER.unpack(first)
    if length == 0 or length > MAX_PAYLOAD:
        raise ProtocolError(f"invalid frame length {length} (must be 1..{MAX_PAYLOAD})")
    return recv_exact(sock, length)
