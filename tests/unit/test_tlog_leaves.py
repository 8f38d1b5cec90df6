"""The leaves' exact bytes (golden vectors: a leaf of each kind) and their one spelling."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlog import merkle
from tlog.leaves import ChunkStored, LeafError, RoundClosed, RoundOpened, chunk_digest, new_salt, parse_leaf

SEED_COMMITMENT = base64.b64decode("ubiOH69ckxJKeTHVqsy5mNBEPtdsC1+JEgu/W0TGs0Q=")
SALT = bytes(range(32))
# Two bets as the store writes them (app.domain.encode_rows: UTF-8 CSV, LF).
ROWS = "1,Ana,Díaz,30111222,1990-05-01,7574\n1,Luis,Paz,28999111,1985-12-31,42\n".encode()

GOLDEN = [
    (
        RoundOpened(1, 2, None, SEED_COMMITMENT),
        b"lottery/leaf/v1\nround-opened\nround 1\nagencies 2\nwinning-number random\n"
        b"seed-commitment ubiOH69ckxJKeTHVqsy5mNBEPtdsC1+JEgu/W0TGs0Q=\n",
        "f9986893a099a2f6330d848b275b20634bcc652972801fd76fd1cb11b6196a07",
    ),
    (
        RoundOpened(2, 5, 7574),
        b"lottery/leaf/v1\nround-opened\nround 2\nagencies 5\nwinning-number 7574\n",
        "007424859fb9a15894e44624e3db2445f0c3dcf29ee2df3b918ed8d5c476054a",
    ),
    (
        ChunkStored(1, 1, "agency-1-chunk-0", 2, chunk_digest(SALT, ROWS)),
        b"lottery/leaf/v1\nchunk-stored\nround 1\nagency 1\nkey agency-1-chunk-0\nbets 2\n"
        b"digest 3sYp7psNIK57e1tl5ZEvoT9Hng5/b6XimJ/jNkFLc1Q=\n",
        "7330783fd71d8944dc3b914a057fbbc8c2d2fefaa45579120c3d30b7fd32ef2a",
    ),
    (
        RoundClosed(1, 2, 3, 2),
        b"lottery/leaf/v1\nround-closed\nround 1\nchunks 2\nbets 3\nlast-chunk 2\n",
        "063e5400814994094d9085be613219e89a3982f0ebd55ea470a680a2659ec0bf",
    ),
    (
        RoundClosed(2, 0, 0, None),
        b"lottery/leaf/v1\nround-closed\nround 2\nchunks 0\nbets 0\nlast-chunk none\n",
        "891111c49a42c9cabbe73da857435f5167f634c8bbadedd71d7e90c39a742d3e",
    ),
]


@pytest.mark.parametrize(("leaf", "data", "leaf_hash"), GOLDEN)
def test_golden_leaves(leaf, data, leaf_hash):
    assert leaf.bytes() == data
    assert parse_leaf(data) == leaf
    assert merkle.leaf_hash(data).hex() == leaf_hash
    assert hashlib.sha256(b"\x00" + data).hexdigest() == leaf_hash


def test_the_chunk_digest_is_salted_sha256_of_the_stored_rows():
    assert chunk_digest(SALT, ROWS) == hashlib.sha256(b"lottery/chunk/v1\n" + SALT + ROWS).digest()
    assert base64.b64encode(chunk_digest(SALT, ROWS)) == b"3sYp7psNIK57e1tl5ZEvoT9Hng5/b6XimJ/jNkFLc1Q="
    assert chunk_digest(new_salt(), ROWS) != chunk_digest(SALT, ROWS)  # a bettor is not guessable without it
    for salt in (b"", bytes(31), bytes(33)):
        with pytest.raises(LeafError):
            chunk_digest(salt, ROWS)


OPEN, CHUNK, CLOSE = GOLDEN[0][1], GOLDEN[2][1], GOLDEN[3][1]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        OPEN[:-1],  # no final newline
        OPEN + b"\n",
        OPEN.replace(b"v1", b"v2"),
        OPEN.replace(b"round 1", b"round 01"),
        OPEN.replace(b"round 1", b"round 0"),
        OPEN.replace(b"round 1", b"round  1"),
        OPEN.replace(b"round 1", b"round +1"),
        OPEN.replace(b"agencies 2\n", b""),
        OPEN.replace(b"round 1\nagencies 2\n", b"agencies 2\nround 1\n"),  # field order
        OPEN.replace(b"round 1\n", b"round 1\nround 1\n"),  # a field twice
        OPEN.replace(b"random", b"7574"),  # a number and a commitment
        OPEN.replace(b"=\n", b"\n"),  # unpadded base64
        GOLDEN[1][1].replace(b"7574", b"10000"),
        CHUNK.replace(b"key agency-1-chunk-0", b"key agency 1"),
        CHUNK.replace(b"key agency-1-chunk-0", b"key "),
        CHUNK.replace(b"key agency-1-chunk-0", b"key " + b"k" * 256),
        CHUNK.replace(b"bets 2", b"bets -2"),
        CHUNK.replace(b"chunk-stored", b"chunk-deleted"),
        CHUNK.replace(b"\n", b"\r\n"),
        CLOSE.replace(b"last-chunk 2", b"last-chunk none"),  # chunks but no last one
        CLOSE.replace(b"chunks 2", b"chunks 0"),
        CLOSE + b"extra 1\n",
        "lottery/leaf/v1\nround-closed\nround 1\nchunks 2\nbets 3\nlast-chunk ٢\n".encode(),
    ],
)
def test_anything_else_is_no_leaf(data):
    with pytest.raises(LeafError):
        parse_leaf(data)


u64 = st.integers(0, 2**64 - 1)
positive = st.integers(1, 2**64 - 1)
digest = st.binary(min_size=32, max_size=32)
key = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)
leaves = st.one_of(
    st.builds(RoundOpened, positive, positive, st.integers(0, 9999)),
    st.builds(RoundOpened, positive, positive, st.none(), digest),
    st.builds(ChunkStored, positive, positive, key, u64, digest),
    st.builds(RoundClosed, positive, st.just(0), u64, st.none()),
    st.builds(RoundClosed, positive, positive, u64, u64),
)


@settings(max_examples=300, deadline=None)
@given(leaves)
def test_every_leaf_has_one_spelling(leaf):
    data = leaf.bytes()
    assert parse_leaf(data) == leaf
    assert data.isascii() and data.endswith(b"\n")


@settings(max_examples=300, deadline=None)
@given(leaves, st.data())
def test_a_changed_byte_is_another_leaf_or_none(leaf, data):
    original = leaf.bytes()
    i = data.draw(st.integers(0, len(original) - 1))
    changed = (
        original[:i] + bytes([data.draw(st.integers(0, 255).filter(lambda b: b != original[i]))]) + original[i + 1 :]
    )
    try:
        other = parse_leaf(changed)
    except LeafError:
        return
    assert other != leaf and other.bytes() == changed


def test_salts_are_never_handed_out_twice_across_refills_and_threads() -> None:
    import threading

    taken: list[bytes] = []
    guard = threading.Lock()

    def take(count: int) -> None:
        mine = [new_salt() for _ in range(count)]
        with guard:
            taken.extend(mine)

    threads = [threading.Thread(target=take, args=(500,)) for _ in range(4)]  # refills: 64 salts a read
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 2000 and len(set(taken)) == 2000
    assert all(len(salt) == 32 for salt in taken)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX")
def test_a_forked_child_never_hands_out_its_parents_salts() -> None:
    import os

    new_salt()  # the parent's pool holds unused salts now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reported through the pipe
        try:
            os.write(write, b"".join(new_salt() for _ in range(3)))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        childs = pipe.read()
    os.waitpid(child, 0)
    parents = b"".join(new_salt() for _ in range(3))  # the parent's next, from the same pool
    assert len(childs) == 96 and childs != parents
    assert not {childs[i : i + 32] for i in range(0, 96, 32)} & {parents[i : i + 32] for i in range(0, 96, 32)}
