"""The log's leaves: small versioned text records, one spelling each (docs/transparency.md).

Every leaf is ASCII lines ending in ``\\n``: ``lottery/leaf/v1``, the kind, then ``name value``
lines in a fixed order. Numbers are decimal without leading zeros; digests base64 (32 bytes)::

    lottery/leaf/v1            lottery/leaf/v1            lottery/leaf/v1
    round-opened               chunk-stored               round-closed
    round 3                    round 3                    round 3
    agencies 5                 agency 2                   chunks 41
    winning-number 7574        key <Idempotency-Key>      bets 204117
      (or: winning-number      bets 5000                  last-chunk 57 (or: none)
       random, then a line     digest <base64>
       seed-commitment <b64>)

A chunk's digest hides its bettors: SHA-256("lottery/chunk/v1\\n" ‖ salt ‖ rows), with a 32-byte
salt the uploader draws per upload and keeps, and ``rows`` the chunk's bytes as stored (UTF-8
CSV, LF: app.domain.encode_rows). The leaf hash is merkle.leaf_hash(leaf bytes).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass

from tlog import b64

VERSION = "lottery/leaf/v1"
SALT_SIZE = DIGEST_SIZE = 32
U64 = 2**64 - 1
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # the Idempotency-Key: visible ASCII (app/deps.py)
_NUMBER = re.compile(r"0|[1-9][0-9]{0,19}")


class LeafError(ValueError):
    """Bytes that are no leaf of this log, or a leaf that cannot be."""


def _in(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise LeafError(f"{what} is {low} to {high} (got {value})")


def _digest(value: bytes, what: str) -> None:
    if len(value) != DIGEST_SIZE:
        raise LeafError(f"{what} is {DIGEST_SIZE} bytes (got {len(value)})")


def _render(kind: str, *fields: tuple[str, object]) -> bytes:
    lines = [VERSION, kind, *(f"{name} {value}" for name, value in fields)]
    return "".join(line + "\n" for line in lines).encode("ascii")


@dataclass(frozen=True, slots=True)
class RoundOpened:
    round: int
    agencies: int
    winning_number: int | None  # None: drawn at the close, from the seed committed here
    seed_commitment: bytes | None = None

    def __post_init__(self) -> None:
        _in(self.round, 1, U64, "a round")
        _in(self.agencies, 1, U64, "a round's agencies")
        if (self.winning_number is None) == (self.seed_commitment is None):
            raise LeafError("a round has a winning number or a seed commitment, not both")
        if self.winning_number is not None:
            _in(self.winning_number, 0, 9999, "a winning number")
        if self.seed_commitment is not None:
            _digest(self.seed_commitment, "a seed commitment")

    def bytes(self) -> bytes:
        fields: list[tuple[str, object]] = [("round", self.round), ("agencies", self.agencies)]
        if self.seed_commitment is None:
            fields.append(("winning-number", self.winning_number))
        else:
            fields += [("winning-number", "random"), ("seed-commitment", b64.encode(self.seed_commitment))]
        return _render("round-opened", *fields)


@dataclass(frozen=True, slots=True)
class ChunkStored:
    round: int
    agency: int
    key: str  # the chunk's Idempotency-Key
    bets: int
    digest: bytes  # chunk_digest(salt, rows)

    def __post_init__(self) -> None:
        _in(self.round, 1, U64, "a round")
        _in(self.agency, 1, U64, "an agency")
        if not _KEY.fullmatch(self.key):
            raise LeafError("an idempotency key is 1 to 255 visible ASCII characters")
        _in(self.bets, 0, U64, "a chunk's bets")
        _digest(self.digest, "a chunk digest")

    def bytes(self) -> bytes:
        return _render(
            "chunk-stored",
            ("round", self.round),
            ("agency", self.agency),
            ("key", self.key),
            ("bets", self.bets),
            ("digest", b64.encode(self.digest)),
        )


@dataclass(frozen=True, slots=True)
class RoundClosed:
    round: int
    chunks: int  # the round's chunk leaves
    bets: int  # their bets, summed
    last_chunk: int | None  # the log index of its last chunk leaf; None when it has none

    def __post_init__(self) -> None:
        _in(self.round, 1, U64, "a round")
        _in(self.chunks, 0, U64, "a round's chunks")
        _in(self.bets, 0, U64, "a round's bets")
        if (self.chunks == 0) != (self.last_chunk is None):
            raise LeafError("a round has a last chunk exactly when it has chunks")
        if self.last_chunk is not None:
            _in(self.last_chunk, 0, U64, "a log index")

    def bytes(self) -> bytes:
        last = "none" if self.last_chunk is None else self.last_chunk
        return _render(
            "round-closed", ("round", self.round), ("chunks", self.chunks), ("bets", self.bets), ("last-chunk", last)
        )


Leaf = RoundOpened | ChunkStored | RoundClosed


class _SaltPool:
    """Salts cut from one ``os.urandom`` read of ``count`` salts: the server draws one per chunk,
    and a read per salt was a system call per one-bet request, on the event loop (issue 22).
    A forked child forgets its parent's unused salts: two processes never hand out the same."""

    def __init__(self, count: int = 64):
        self.count = count
        self._lock = threading.Lock()
        self._drawn = b""
        self._next = 0

    def take(self) -> bytes:
        with self._lock:
            if self._next == len(self._drawn):
                self._drawn, self._next = os.urandom(SALT_SIZE * self.count), 0
            salt = self._drawn[self._next : self._next + SALT_SIZE]
            self._next += SALT_SIZE
            return salt

    def forget(self) -> None:
        self._lock = threading.Lock()  # a fork may have copied it held by another thread
        self._drawn, self._next = b"", 0


_SALTS = _SaltPool()
os.register_at_fork(after_in_child=_SALTS.forget)


def new_salt() -> bytes:
    """A fresh secret salt of SALT_SIZE bytes, from the operating system's CSPRNG."""
    return _SALTS.take()


def chunk_digest(salt: bytes, rows: bytes) -> bytes:
    """SHA-256("lottery/chunk/v1\\n" ‖ salt ‖ rows): the salt is fixed-length, so the split is
    unambiguous; without the salt, nobody can test a guessed document or birthdate."""
    if len(salt) != SALT_SIZE:
        raise LeafError(f"a salt is {SALT_SIZE} bytes (got {len(salt)})")
    digest = hashlib.sha256(b"lottery/chunk/v1\n" + salt)
    digest.update(rows)  # not concatenated: a chunk's rows are not copied to be hashed
    return digest.digest()


def parse_leaf(data: bytes) -> Leaf:
    """The leaf whose bytes are exactly ``data``; LeafError otherwise."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LeafError("a leaf is ASCII") from None
    lines = text.split("\n")
    if len(lines) < 3 or lines[0] != VERSION or lines[-1] != "":
        raise LeafError(f"not a {VERSION} leaf")
    fields = dict(line.partition(" ")[::2] for line in lines[2:-1])
    leaf = _build(lines[1], fields)
    if leaf.bytes() != data:  # one spelling: field order, duplicates, extra lines, zeros
        raise LeafError("not the canonical spelling of a leaf")
    return leaf


def _build(kind: str, fields: dict[str, str]) -> Leaf:
    def number(name: str) -> int:
        value = fields.get(name, "")
        if not _NUMBER.fullmatch(value):
            raise LeafError(f"{kind}: {name} is a decimal number")
        return int(value)

    def digest(name: str) -> bytes:
        try:
            return b64.decode(fields.get(name, ""))
        except ValueError:
            raise LeafError(f"{kind}: {name} is base64") from None

    if kind == "round-opened":
        if fields.get("winning-number") == "random":
            return RoundOpened(number("round"), number("agencies"), None, digest("seed-commitment"))
        return RoundOpened(number("round"), number("agencies"), number("winning-number"))
    if kind == "chunk-stored":
        return ChunkStored(number("round"), number("agency"), fields.get("key", ""), number("bets"), digest("digest"))
    if kind == "round-closed":
        last = None if fields.get("last-chunk") == "none" else number("last-chunk")
        return RoundClosed(number("round"), number("chunks"), number("bets"), last)
    raise LeafError(f"unknown leaf kind {kind!r}")
