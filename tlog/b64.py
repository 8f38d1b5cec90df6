"""Standard base64 (RFC 4648 §4), the only spelling tlog writes or reads: padded, canonical."""

from __future__ import annotations

import base64
import binascii


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> bytes:
    """ValueError unless ``text`` is exactly how :func:`encode` spells some bytes (so one value
    has one spelling: no missing padding, stray characters or non-zero trailing bits)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad base64") from None
    if encode(data) != text:
        raise ValueError("bad base64")
    return data
