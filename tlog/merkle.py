"""RFC 9162 §2.1 Merkle trees: hashes, roots, inclusion and consistency proofs.

Leaf hash ``SHA-256(0x00 ‖ leaf)``, node hash ``SHA-256(0x01 ‖ left ‖ right)``; the tree of n
leaves splits at the largest power of two below n. Proofs are generated from any source of leaf
hashes (a sequence or a callable: O(n) hashing per proof), or from a :class:`Tree`, which keeps
every complete subtree's hash so that appending costs O(1) hashes amortized (O(log n) at worst),
and the root of any size and every proof cost O(log n) reads and hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}): the root of the empty tree

LeafHashes = Sequence[bytes] | Callable[[int], bytes]
RangeHash = Callable[[int, int], bytes]  # the hash of the subtree over leaves [lo, hi)


class ProofError(ValueError):
    """A proof that does not prove what it claims (or asks for a tree that cannot exist)."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n > 1): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold(pieces: list[bytes]) -> bytes:
    """The hash of perfect subtrees laid side by side, largest first: right to left."""
    result = pieces[-1]
    for piece in reversed(pieces[:-1]):
        result = node_hash(piece, result)
    return result


def _getter(leaves: LeafHashes) -> Callable[[int], bytes]:
    return leaves.__getitem__ if isinstance(leaves, Sequence) else leaves


def root_of(size: int, leaves: LeafHashes) -> bytes:
    """MTH of the first ``size`` leaf hashes: O(size) hashes, O(log size) memory."""
    return _range_hash_of(_getter(leaves))(0, size) if size else EMPTY_ROOT


def _range_hash_of(get: Callable[[int], bytes]) -> RangeHash:
    def range_hash(lo: int, hi: int) -> bytes:
        # A stack of perfect subtrees (hash, leaf count): merge equal neighbours as leaves come.
        stack: list[tuple[bytes, int]] = []
        for index in range(lo, hi):
            top, count = get(index), 1
            while stack and stack[-1][1] == count:
                left, _ = stack.pop()
                top, count = node_hash(left, top), count * 2
            stack.append((top, count))
        return _fold([h for h, _ in stack])

    return range_hash


def _check_size(size: int) -> None:
    if size < 0:
        raise ProofError(f"a tree size is never negative (got {size})")


def _path(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf level first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    siblings: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(range_hash(lo, lo + k))
            lo += k
    return siblings[::-1]


def _subproof(old: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, deepest first."""
    _check_size(old)
    if old > size:
        raise ProofError(f"a tree of {size} cannot extend one of {old}")
    if old in (0, size):
        return []
    nodes: list[bytes] = []
    lo, hi, whole = 0, size, True  # whole: D[lo:lo+m] is a subtree the verifier already holds
    while old != hi - lo:
        k = _split(hi - lo)
        if old <= k:
            nodes.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            nodes.append(range_hash(lo, lo + k))
            lo, old, whole = lo + k, old - k, False
    if not whole:
        nodes.append(range_hash(lo, hi))
    return nodes[::-1]


def inclusion_proof(index: int, size: int, leaves: LeafHashes) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (O(size) hashes)."""
    return _path(index, size, _range_hash_of(_getter(leaves)))


def consistency_proof(old: int, size: int, leaves: LeafHashes) -> list[bytes]:
    """The proof that the tree of ``size`` leaves extends the one of ``old`` (O(size) hashes)."""
    return _subproof(old, size, _range_hash_of(_getter(leaves)))


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"a hash is {HASH_SIZE} bytes (got {len(h)})")


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift fn and sn equally until fn's low bit is set or fn is 0."""
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf``: RFC 9162 §2.1.3.2, steps 1-4."""
    _check_hashes(leaf, *proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path to the root")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    _check_hashes(root)
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"leaf {index} is not in the tree of {size} with this root")


def verify_consistency(old: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]) -> None:
    """Raise ProofError unless ``proof`` shows the tree (size, root) extends (old, old_root).

    RFC 9162 §2.1.4.2 for 0 < old < size; a tree is consistent with itself (equal roots, empty
    proof), and every tree extends the empty one (empty proof).
    """
    _check_size(old)
    if old > size:
        raise ProofError(f"a tree of {size} cannot extend one of {old}")
    _check_hashes(old_root, root, *proof)
    if old == 0 or old == size:
        if proof:
            raise ProofError("the proof between these sizes is empty")
        if old == size and old_root != root:
            raise ProofError(f"two different roots for the tree of {size}")
        return
    if not proof:
        raise ProofError("an empty proof proves nothing between different sizes")
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != root:
        raise ProofError(f"the tree of {size} with this root does not extend the tree of {old} with that root")


class Tree:
    """An append-only tree that keeps the hash of every complete subtree (the server's view).

    ``level[h]`` holds, packed 32 bytes each, the hashes of the complete subtrees of 2^h leaves
    in order: 2n hashes in all (64 bytes a leaf). Appending a leaf completes at most log2(n)
    subtrees (one on average). Any subtree the RFC's recursion names starts at a multiple of a
    power of two at least its width, so it is a handful of complete subtrees side by side: the
    root of any size, and each proof node, is O(log n) reads and hashes.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def _get(self, height: int, index: int) -> bytes:
        return bytes(self._levels[height][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} is not in a tree of {len(self)}")
        return self._get(0, index)

    def append(self, leaf: bytes) -> int:
        """Append a leaf hash; its index."""
        _check_hashes(leaf)
        index = len(self)
        self._levels[0] += leaf
        height, i, top = 0, index, leaf
        while i & 1:  # a right child: its pair is complete, so is their parent
            top = node_hash(self._get(height, i - 1), top)
            height, i = height + 1, i >> 1
            if height == len(self._levels):
                self._levels.append(bytearray())
            self._levels[height] += top
        return index

    def truncate(self, size: int) -> None:
        """Keep the first ``size`` leaves: each level keeps its subtrees that end within them
        (a writer's leaves signed but not committed go: O(log n))."""
        if not 0 <= size <= len(self):
            raise ValueError(f"cannot cut a tree of {len(self)} to {size}")
        for height, level in enumerate(self._levels):
            del level[(size >> height) * HASH_SIZE :]

    def range_hash(self, lo: int, hi: int) -> bytes:
        """The hash of the subtree over leaves [lo, hi): lo must be a multiple of a power of two
        at least hi - lo (every subtree of the RFC's recursion is)."""
        width = hi - lo
        if not 0 <= lo < hi <= len(self) or lo % (1 << (width - 1).bit_length()):
            raise ValueError(f"[{lo}, {hi}) is not a subtree of a tree of {len(self)}")
        pieces: list[bytes] = []
        while lo < hi:
            height = (hi - lo).bit_length() - 1  # the largest perfect subtree that fits
            pieces.append(self._get(height, lo >> height))
            lo += 1 << height
        return _fold(pieces)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default): O(log size)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"no tree of {size} in a log of {len(self)}")
        return self.range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_within(size)
        return _path(index, size, self.range_hash)

    def consistency_proof(self, old: int, size: int) -> list[bytes]:
        self._check_within(size)
        return _subproof(old, size, self.range_hash)

    def _check_within(self, size: int) -> None:
        if size > len(self):
            raise ProofError(f"no tree of {size} in a log of {len(self)}")
