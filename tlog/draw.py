"""The committed random draw: a seed committed when the round opens, the number derived from
the log's root once the round's close leaf is in (docs/transparency.md).

    commitment = SHA-256("lottery/seed/v1\\n" ‖ seed)                     (seed: 32 bytes)
    x = SHA-256("lottery/draw/v1\\n" ‖ origin ‖ "\\n" ‖ u64be(round) ‖ u64be(N) ‖ root_N ‖ seed)
    for c = 0, 1, ...: B = SHA-256(x ‖ u32be(c)); read B as 16 big-endian 16-bit words;
    the number is w mod 10000 for the first w < 60000 (rejection sampling: no modulo bias)

N is the tree size with the close leaf (at index N-1) in; root_N its root.
"""

from __future__ import annotations

import hashlib
import itertools

from tlog.merkle import HASH_SIZE

SEED_SIZE = 32
NUMBERS = 10_000
ACCEPT_BELOW = 60_000  # the largest multiple of NUMBERS a 16-bit word holds: each number 6 ways


class DrawError(ValueError):
    """Inputs no draw can have."""


def new_seed() -> bytes:
    import secrets  # here, not at import: the uploader's start-up is measured

    return secrets.token_bytes(SEED_SIZE)


def _check_seed(seed: bytes) -> None:
    if len(seed) != SEED_SIZE:
        raise DrawError(f"a seed is {SEED_SIZE} bytes (got {len(seed)})")


def seed_commitment(seed: bytes) -> bytes:
    _check_seed(seed)
    return hashlib.sha256(b"lottery/seed/v1\n" + seed).digest()


def draw_input(origin: str, round_id: int, size: int, root: bytes, seed: bytes) -> bytes:
    """x: the hash every word of the draw comes from."""
    _check_seed(seed)
    if not origin or "\n" in origin:
        raise DrawError("an origin is one non-empty line")
    if not 1 <= round_id < 2**64 or not 1 <= size < 2**64:
        raise DrawError("a round and a tree size are 1 to 2^64-1")
    if len(root) != HASH_SIZE:
        raise DrawError(f"a root is {HASH_SIZE} bytes (got {len(root)})")
    head = b"lottery/draw/v1\n" + origin.encode("utf-8") + b"\n"
    return hashlib.sha256(head + round_id.to_bytes(8, "big") + size.to_bytes(8, "big") + root + seed).digest()


def accepted_word(x: bytes) -> tuple[int, int, int]:
    """(w, c, i): the first word under ACCEPT_BELOW, its block counter and its place in block c."""
    for counter in itertools.count():
        block = hashlib.sha256(x + counter.to_bytes(4, "big")).digest()
        for i in range(0, len(block), 2):
            word = int.from_bytes(block[i : i + 2], "big")
            if word < ACCEPT_BELOW:
                return word, counter, i // 2
    raise AssertionError("unreachable")  # itertools.count() never ends


def winning_number(origin: str, round_id: int, size: int, root: bytes, seed: bytes) -> int:
    """The round's number, 0 to 9999, from the log's head with the close leaf and the seed."""
    return accepted_word(draw_input(origin, round_id, size, root, seed))[0] % NUMBERS
