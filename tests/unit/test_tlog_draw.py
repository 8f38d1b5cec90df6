"""The committed draw: golden vectors on a real little log (one of them takes the rejection
branch), the loop past the first block, and a chi-square test of 100,000 derived numbers."""

from __future__ import annotations

import hashlib
import math

import pytest

from tlog import draw, merkle
from tlog.leaves import ChunkStored, RoundClosed, RoundOpened, chunk_digest

ORIGIN = "lottery.example/log"
ROWS_1 = "1,Ana,Díaz,30111222,1990-05-01,7574\n1,Luis,Paz,28999111,1985-12-31,42\n".encode()
ROWS_2 = '2,"María, José",Sosa,40111222,2001-02-03,9999\n'.encode()


def round_one(seed: bytes) -> merkle.Tree:
    """Round 1 of a new log: opened with the seed's commitment, two chunks, closed (N = 4)."""
    tree = merkle.Tree()
    for leaf in (
        RoundOpened(1, 2, None, draw.seed_commitment(seed)),
        ChunkStored(1, 1, "agency-1-chunk-0", 2, chunk_digest(bytes(range(32)), ROWS_1)),
        ChunkStored(1, 2, "agency-2-chunk-0", 1, chunk_digest(bytes(range(32, 64)), ROWS_2)),
        RoundClosed(1, 2, 3, 2),
    ):
        tree.append(merkle.leaf_hash(leaf.bytes()))
    return tree


def by_hand(origin: str, round_id: int, size: int, root: bytes, seed: bytes, accept_below: int = 60000) -> int:
    """The issue's derivation, written out again without tlog.draw."""
    x = hashlib.sha256(
        b"lottery/draw/v1\n"
        + origin.encode()
        + b"\n"
        + round_id.to_bytes(8, "big")
        + size.to_bytes(8, "big")
        + root
        + seed
    ).digest()
    c = 0
    while True:
        block = hashlib.sha256(x + c.to_bytes(4, "big")).digest()
        for i in range(16):
            w = block[2 * i] * 256 + block[2 * i + 1]
            if w < accept_below:
                return w % 10000
        c += 1


# Seeds SHA-256("lottery test seed <i>"): i = 0 takes its first word; i = 47 is the first i
# whose first two words are both >= 60000 (found by a search over i, fixed here).
GOLDEN = [
    # (i, seed, root of the 4-leaf log, x, (w, c, i), number)
    (
        0,
        "492490fcaf3d737996adf60c7f318b2b3d5fdfb4d26073f78bfd8fcf72bdefbe",
        "94b16ee5a989038c01184f513775c91bb78541cd6c544ea039abe23327dca64c",
        "99c3c6bfc2c9c3b8bf24631228cfca984c34c36f2d12bb4357e00e8b2c26efc0",
        (11116, 0, 0),
        1116,
    ),
    (
        47,
        "67abb858b184a2cf61b593be070177acbadc23b8018b122b234aa94cfcebb447",
        "f6587572a90dea3e8feee655168130d45d2bb9534775d6d4d88aa30b3037363b",
        "4cfd6e16213ff24c87eb8d24e84ec47afddd187d464dc15068203af3d8049e83",
        (16967, 0, 2),
        6967,
    ),
]


@pytest.mark.parametrize(("i", "seed", "root", "x", "word", "number"), GOLDEN)
def test_golden_draws(i, seed, root, x, word, number):
    seed_bytes = bytes.fromhex(seed)
    assert seed_bytes == hashlib.sha256(f"lottery test seed {i}".encode()).digest()
    tree = round_one(seed_bytes)
    assert tree.root(4).hex() == root
    assert draw.draw_input(ORIGIN, 1, 4, tree.root(4), seed_bytes).hex() == x
    assert draw.accepted_word(bytes.fromhex(x)) == word
    assert draw.winning_number(ORIGIN, 1, 4, tree.root(4), seed_bytes) == number
    assert by_hand(ORIGIN, 1, 4, tree.root(4), seed_bytes) == number


def test_the_rejection_branch_is_taken():
    x = bytes.fromhex(GOLDEN[1][3])
    block = hashlib.sha256(x + bytes(4)).digest()
    words = [int.from_bytes(block[i : i + 2], "big") for i in range(0, 32, 2)]
    assert words[0] >= 60000 and words[1] >= 60000 and words[2] == 16967
    assert words[0] % 10000 != 6967  # without the rejection, another number would have won


def test_past_the_first_block(monkeypatch):
    """With fewer words accepted, whole blocks are rejected: the counter moves on as written."""
    monkeypatch.setattr(draw, "ACCEPT_BELOW", 2000)
    root, seed = bytes(32), bytes(range(32))
    counters = set()
    for size in range(1, 40):
        x = draw.draw_input(ORIGIN, 7, size, root, seed)
        counters.add(draw.accepted_word(x)[1])
        assert draw.winning_number(ORIGIN, 7, size, root, seed) == by_hand(ORIGIN, 7, size, root, seed, 2000)
    assert max(counters) >= 1


def test_the_seed_commitment():
    seed = bytes.fromhex(GOLDEN[0][1])
    assert draw.seed_commitment(seed) == hashlib.sha256(b"lottery/seed/v1\n" + seed).digest()
    assert draw.seed_commitment(seed).hex() == "b9b88e1faf5c93124a7931d5aaccb998d0443ed76c0b5f89120bbf5b44c6b344"
    assert len(draw.new_seed()) == 32 and draw.new_seed() != draw.new_seed()


@pytest.mark.parametrize(
    ("origin", "round_id", "size", "root", "seed"),
    [
        ("", 1, 1, bytes(32), bytes(32)),
        ("two\nlines", 1, 1, bytes(32), bytes(32)),
        (ORIGIN, 0, 1, bytes(32), bytes(32)),
        (ORIGIN, 1, 0, bytes(32), bytes(32)),
        (ORIGIN, 2**64, 1, bytes(32), bytes(32)),
        (ORIGIN, 1, 1, bytes(31), bytes(32)),
        (ORIGIN, 1, 1, bytes(32), bytes(16)),
    ],
)
def test_impossible_draws_are_refused(origin, round_id, size, root, seed):
    with pytest.raises(draw.DrawError):
        draw.winning_number(origin, round_id, size, root, seed)


def chi_square_critical(df: int, p: float) -> float:
    """The chi-square quantile: bisection on the regularized lower gamma P(df/2, x/2) (series)."""

    def cdf(x: float) -> float:
        a, z = df / 2, x / 2
        term = total = 1 / a
        n = 0
        while term > 1e-15 * total:
            n += 1
            term *= z / (a + n)
            total += term
        return math.exp(a * math.log(z) - z - math.lgamma(a)) * total

    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return lo


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


CRITICAL = chi_square_critical(9, 0.999)  # 10 buckets: 9 degrees of freedom


def test_the_critical_value():
    assert round(CRITICAL, 2) == 27.88  # the tables' 27.877


def derived_numbers(biased: bool = False) -> list[int]:
    """100,000 draws: one log head (fixed root and seed), sizes 1 to 100,000."""
    root, seed = hashlib.sha256(b"chi-square root").digest(), hashlib.sha256(b"chi-square seed").digest()
    numbers = []
    for size in range(1, 100_001):
        x = draw.draw_input(ORIGIN, 1, size, root, seed)
        if biased:  # the first word mod 10000, no rejection: what the derivation must not be
            numbers.append(int.from_bytes(hashlib.sha256(x + bytes(4)).digest()[:2], "big") % 10000)
        else:
            numbers.append(draw.accepted_word(x)[0] % 10000)
    return numbers


def test_100000_derived_numbers_are_uniform():
    numbers = derived_numbers()
    for bucket in (lambda n: n // 1000, lambda n: n % 10):  # the leading digit and the last
        counts = [0] * 10
        for n in numbers:
            counts[bucket(n)] += 1
        assert chi_square(counts) < CRITICAL, counts
    biased = [0] * 10
    for n in derived_numbers(biased=True):
        biased[n // 1000] += 1
    assert chi_square(biased) > CRITICAL  # the test sees modulo bias: it has the power to
