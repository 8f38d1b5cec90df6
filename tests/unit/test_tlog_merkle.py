"""tlog.merkle against published RFC 6962/9162 vectors, a real Certificate Transparency log, and
generated trees (every proof verifies; every altered one fails)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlog import merkle
from tlog.merkle import ProofError

VECTORS = Path(__file__).parents[1] / "tlog_vectors"


def dh(text: str) -> bytes:
    return bytes.fromhex(text)


# transparency-dev/merkle, rfc6962/rfc6962_test.go (TestRFC6962Hasher).
def test_the_hasher_of_rfc6962():
    assert merkle.EMPTY_ROOT == dh("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert merkle.leaf_hash(b"") == dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert merkle.leaf_hash(b"L123456") == dh("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    assert merkle.node_hash(b"N123", b"N456") == dh("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")


# transparency-dev/merkle, proof/verify_test.go: the test tree (leaves, roots of sizes 1..8),
# its inclusion proofs (leaf numbered from 1 there: index = leaf - 1) and consistency proofs.
LEAVES = [
    dh(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    dh("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    dh("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    dh("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    dh("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    dh("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION = [  # (leaf, size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (size1, size2, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
SOME_HASH = dh("abacaba000000000000000000000000000000000000000000060061e00123456")
LEAF_HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def tree_of(hashes: list[bytes]) -> merkle.Tree:
    tree = merkle.Tree()
    for h in hashes:
        tree.append(h)
    return tree


def test_the_roots_of_the_test_tree():
    tree = tree_of(LEAF_HASHES)
    for size, root in enumerate(ROOTS, start=1):
        assert merkle.root_of(size, LEAF_HASHES) == root
        assert tree.root(size) == root
    assert merkle.root_of(0, LEAF_HASHES) == tree.root(0) == merkle.EMPTY_ROOT


def corrupt_inclusion(index, size, proof, root, leaf):
    """transparency-dev/merkle's corruptInclusionProof: every probe must fail."""
    probes = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, merkle.EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root, leaf, [*proof, b""]),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [b"", *proof]),
        (index, size, root, leaf, [root, *proof]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((index, size, root, leaf, flipped))
    if proof:
        probes.append((index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_the_published_inclusion_proofs(leaf, size, proof):
    index, proof = leaf - 1, [dh(p) for p in proof]
    assert merkle.inclusion_proof(index, size, LEAF_HASHES) == proof
    assert tree_of(LEAF_HASHES).inclusion_proof(index, size) == proof
    merkle.verify_inclusion(index, size, LEAF_HASHES[index], proof, ROOTS[size - 1])
    for probe in corrupt_inclusion(index, size, proof, ROOTS[size - 1], LEAF_HASHES[index]):
        with pytest.raises(ProofError):
            i, n, root, leaf_hash, p = probe
            merkle.verify_inclusion(i, n, leaf_hash, p, root)


def corrupt_consistency(size1, size2, root1, root2, proof):
    """transparency-dev/merkle's corruptConsistencyProof: every probe must fail."""
    probes = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, b"WrongRoot", root2, proof),
        (size1, size2, root1, b"WrongRoot", proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, b""]),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [b"", *proof]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((size1, size2, root1, root2, flipped))
    return probes


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_the_published_consistency_proofs(size1, size2, proof):
    proof = [dh(p) for p in proof]
    root1, root2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    assert merkle.consistency_proof(size1, size2, LEAF_HASHES) == proof
    assert tree_of(LEAF_HASHES).consistency_proof(size1, size2) == proof
    merkle.verify_consistency(size1, size2, root1, root2, proof)
    if proof:  # as there: only non-trivial proofs are corrupted
        for old, new, r1, r2, p in corrupt_consistency(size1, size2, root1, root2, proof):
            with pytest.raises(ProofError):
                merkle.verify_consistency(old, new, r1, r2, p)


# transparency-dev/merkle, proof/verify_test.go: TestVerifyInclusion's probes of impossible trees.
@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_in_no_tree_fails(index, size):
    for leaf, root in ((SOME_HASH, b""), (b"", merkle.EMPTY_ROOT), (SOME_HASH, merkle.EMPTY_ROOT)):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaf, [], root)


# transparency-dev/merkle, proof/verify_test.go: TestVerifyInclusionSingleEntry.
def test_a_single_entry_is_its_own_root():
    h = merkle.leaf_hash(b"data")
    merkle.verify_inclusion(0, 1, h, [], h)
    for leaf, root in ((h, b""), (b"", h), (b"", b"")):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(0, 1, leaf, [], root)


# transparency-dev/merkle, proof/verify_test.go: TestVerifyConsistency's table.
R1, R2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        (0, 0, R1, R2, [], False),
        (1, 1, R1, R2, [], False),
        (1, 0, R1, R2, [], False),
        (2, 1, R1, R2, [], False),
        (1, 2, R1, R2, [], False),
        (0, 0, merkle.EMPTY_ROOT, R2, [], False),
        (1, 1, merkle.EMPTY_ROOT, R2, [], False),
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        (0, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        (1, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        # Sizes that are always consistent (there with any bytes as roots; here roots are hashes).
        (0, 0, SOME_HASH, SOME_HASH, [], True),
        (0, 1, SOME_HASH, merkle.EMPTY_ROOT, [], True),
        (1, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [], True),
    ],
)
def test_the_consistency_table(size1, size2, root1, root2, proof, ok):
    if ok:
        merkle.verify_consistency(size1, size2, root1, root2, proof)
    else:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, root1, root2, proof)


def argon(name: str):
    return json.loads((VECTORS / "argon2020" / name).read_text())


def test_a_real_certificate_transparency_log():
    """Google's Argon 2020 log at 961,984,013 leaves: leaf 10000's audit path, and the proof
    that it extends the tree of 3,654,490 (the vectors of golang/mod's sumdb/tlog/ct_test.go)."""
    b64 = base64.b64decode
    sth, size = argon("sth.json"), argon("sth.json")["tree_size"]
    root = b64(sth["sha256_root_hash"])
    leaf = merkle.leaf_hash(b64(argon("entries.json")["entries"][0]["leaf_input"]))
    path = [b64(h) for h in argon("proof.json")["audit_path"]]
    merkle.verify_inclusion(10000, size, leaf, path, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(10001, size, leaf, path, root)
    old_root = b64("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=")
    consistency = [b64(h) for h in argon("consistency.json")["consistency"]]
    merkle.verify_consistency(3654490, size, old_root, root, consistency)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3654491, size, old_root, root, consistency)


def test_the_tree_refuses_what_is_not_one_of_its_subtrees():
    tree = tree_of(LEAF_HASHES[:5])
    for lo, hi in ((1, 4), (0, 6), (2, 2), (3, 1), (4, 6)):
        with pytest.raises(ValueError):
            tree.range_hash(lo, hi)
    with pytest.raises(ProofError):
        tree.inclusion_proof(0, 6)
    with pytest.raises(ProofError):
        tree.consistency_proof(2, 6)
    with pytest.raises(ValueError):
        tree.append(b"short")


# Generated trees: leaves are hashes of their index, so a tree is its size.
def hashes(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]


BIG = hashes(300)
BIG_TREE = tree_of(BIG)
altered = st.sampled_from(["leaf", "index", "root", "size", "node", "drop", "extra"])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))), altered)
def test_every_inclusion_proof_verifies_and_fails_when_altered(size_index, how):
    size, index = size_index
    proof, root = merkle.inclusion_proof(index, size, BIG), merkle.root_of(size, BIG)
    assert BIG_TREE.inclusion_proof(index, size) == proof
    assert BIG_TREE.root(size) == root
    merkle.verify_inclusion(index, size, BIG[index], proof, root)
    leaf = BIG[index]
    if how == "leaf":
        leaf = merkle.leaf_hash(b"other")
    elif how == "index":
        index = (index + 1) % size if size > 1 else 1
    elif how == "root":
        root = hashlib.sha256(root).digest()
    elif how == "size":
        size *= 2  # not size + 1: the tree of 3 and the tree of 4 share leaf 0's path (the
        # checkpoint's signature binds a size to its root, not the proof)
    elif how == "node" and proof:
        proof = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    elif how == "drop" and proof:
        proof = proof[:-1]
    else:
        proof = [*proof, SOME_HASH]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))), altered)
def test_every_consistency_proof_verifies_and_fails_when_altered(sizes, how):
    old, size = sizes
    proof = merkle.consistency_proof(old, size, BIG)
    old_root, root = merkle.root_of(old, BIG), merkle.root_of(size, BIG)
    assert BIG_TREE.consistency_proof(old, size) == proof
    merkle.verify_consistency(old, size, old_root, root, proof)
    if old == size:
        how = "root"  # the proof is empty: only a root can be wrong
    if how == "leaf":
        old_root = hashlib.sha256(old_root).digest()
    elif how == "root":
        root = hashlib.sha256(root).digest()
    elif how == "index":
        old = old - 1 if old > 1 else old + 1
    elif how == "size":
        size *= 2  # as for inclusion, size + 1 may share the path (1 → 3 and 1 → 4)
    elif how == "node":
        proof = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
    elif how == "drop":
        proof = proof[1:]
    else:
        proof = [SOME_HASH, *proof]
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, size, old_root, root, proof)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300))
def test_the_tree_holds_every_root(size):
    tree = tree_of(BIG[:size])
    assert len(tree) == size
    assert tree.root() == merkle.root_of(size, lambda i: BIG[i])
    assert all(tree.leaf_hash(i) == BIG[i] for i in range(size))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 150).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n), st.integers(0, 150))))
def test_a_tree_cut_back_is_the_tree_of_that_size(sizes):
    """What a writer does with leaves it signed but has not committed yet (PostgreSQL): cut back
    to the committed size, then grown again, the tree is the one built straight."""
    kept, size, more = sizes
    tree = tree_of(BIG[:size])
    tree.truncate(kept)
    assert len(tree) == kept and tree.root() == merkle.root_of(kept, BIG)
    for leaf in BIG[kept : kept + more]:
        tree.append(leaf)
    grown = min(kept + more, len(BIG))
    assert tree.root() == merkle.root_of(grown, BIG)
    assert tree.consistency_proof(kept, grown) == merkle.consistency_proof(kept, grown, BIG)
    with pytest.raises(ValueError):
        tree.truncate(grown + 1)
