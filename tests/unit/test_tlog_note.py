"""tlog.note and tlog.checkpoint against published keys, notes and checkpoints: Go's
golang.org/x/mod/sumdb/note (and sumdb), transparency-dev/formats, and C2SP's specs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlog import note
from tlog.checkpoint import Checkpoint, CheckpointError, open_checkpoint, sign_checkpoint
from tlog.note import InvalidSignature, NoteError, Signer, Verifier

# golang/mod, sumdb/note/note_test.go (TestNewVerifier, TestNewSigner, TestSign, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
PETER = note.Signature("PeterNeumann", 0xC74F20A3, PETER_SIG.split()[-1])
ENOCH = note.Signature("EnochRoot", 0xAF0CFE78, ENOCH_SIG.split()[-1])


def mangled(key: str):
    """Every proper substring of ``key``, and ``key`` with each byte incremented (as Go's tests)."""
    raw = key.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                yield raw[i:j].decode(errors="replace")
    for i in range(len(raw)):
        yield (raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]).decode(errors="replace")


def test_a_verifier_key_and_every_mangling_of_it():
    verifier = Verifier.from_key(PETER_VKEY)
    assert (verifier.name, verifier.key_id, verifier.vkey()) == ("PeterNeumann", 0xC74F20A3, PETER_VKEY)
    for bad in mangled(PETER_VKEY):
        with pytest.raises(NoteError):
            Verifier.from_key(bad)
    # Wrong length key, and unknown algorithm, each with its key id adjusted (Go's test).
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.from_key(bad)


def test_a_signer_key_and_every_mangling_of_it():
    signer = Signer.from_key(PETER_SKEY)
    assert signer.skey() == PETER_SKEY
    assert signer.verifier().vkey() == PETER_VKEY  # the public key derived from the seed
    for bad in mangled(PETER_SKEY):
        with pytest.raises(NoteError):
            Signer.from_key(bad)


@pytest.mark.parametrize(
    ("skey", "vkey"),
    [
        # golang/mod, sumdb/client_test.go: the test sumdb's key pair.
        (
            "PRIVATE+KEY+localhost.localdev/sumdb+00000c67+AXu6+oaVaOYuQOFrf1V59JK1owcFlJcHwwXHDfDGxSPk",
            "localhost.localdev/sumdb+00000c67+AcTrnkbUA+TU4heY3hkjiSES/DSQniBqIeQ/YppAUtK6",
        ),
        # transparency-dev/formats, log/note_test.go: its four key pairs.
        (
            "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
            "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        ),
        (
            "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
            "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        ),
        (
            "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
            "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        ),
        (
            "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
            "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        ),
    ],
)
def test_published_key_pairs(skey, vkey):
    signer, verifier = Signer.from_key(skey), Verifier.from_key(vkey)
    assert signer.verifier() == verifier
    assert verifier.vkey() == vkey
    name, hex_id, _ = vkey.split("+", 2)
    expected = hashlib.sha256(name.encode() + b"\n\x01" + verifier.public_key).digest()[:4]
    assert bytes.fromhex(hex_id) == expected  # key id = SHA-256(name ‖ "\n" ‖ 0x01 ‖ pub)[:4]


def test_signing_is_byte_for_byte_gos():
    signer = Signer.from_key(PETER_SKEY)
    assert note.sign(TEXT, signer) == (TEXT + "\n" + PETER_SIG).encode()
    for bad in ("abc", "no newline", "a\x01b\n", "tab\there\n"):
        with pytest.raises(NoteError):
            note.sign(bad, signer)


def test_the_sumdb_test_servers_signed_trees():
    """golang/mod, sumdb/client_test.go (TestClientFork's comment): two tree notes of the test
    sumdb, reproduced byte for byte with its signer key."""
    signer = Signer.from_key(
        "PRIVATE+KEY+localhost.localdev/sumdb+00000c67+AXu6+oaVaOYuQOFrf1V59JK1owcFlJcHwwXHDfDGxSPk"
    )
    for size, root, sig in (
        (
            5,
            "nWzN20+pwMt62p7jbv1/NlN95ePTlHijabv5zO/s36w=",
            "AAAMZ5/2FVAdMH58kmnz/0h299pwyskEbzDzoa2/YaPdhvLya4YWDFQQxu2TQb5GpwAH4NdWnTwuhILafisyf3CNbgg=",
        ),
        (
            6,
            "wc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=",
            "AAAMZ6oRNswlEZ6ZZhxrCvgl1MBy+nusq4JU+TG6Fe2NihWLqOzb+y2c2kzRLoCr4tvw9o36ucQEnhc20e4nA4Qc/wc=",
        ),
    ):
        checkpoint = Checkpoint.parse(f"go.sum database tree\n{size}\n{root}\n")
        signed = sign_checkpoint(checkpoint, signer)
        assert signed == f"go.sum database tree\n{size}\n{root}\n\n— localhost.localdev/sumdb {sig}\n".encode()
        assert open_checkpoint(signed, signer.verifier(), "go.sum database tree") == checkpoint


def test_opening_notes_as_go_does():
    peter, enoch = Verifier.from_key(PETER_VKEY), Verifier.from_key(ENOCH_VKEY)
    both = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    opened = note.open_note(both, [peter])
    assert (opened.text, opened.sigs, opened.unverified) == (TEXT, (PETER,), (ENOCH,))
    opened = note.open_note(both, [peter, enoch])
    assert (opened.sigs, opened.unverified) == ((PETER, ENOCH), ())
    with pytest.raises(NoteError, match="no verifiable signatures"):
        note.open_note(both, [])
    assert note.parse_note(both).unverified == (PETER, ENOCH)
    with pytest.raises(NoteError, match="ambiguous key EnochRoot\\+af0cfe78"):
        note.open_note((TEXT + "\n" + ENOCH_SIG).encode(), [enoch, peter, enoch])
    note.open_note((TEXT + "\n" + PETER_SIG).encode(), [enoch, peter, enoch])  # unused duplicate: fine
    for many in (101 * PETER_SIG,):
        with pytest.raises(NoteError, match="malformed"):
            note.open_note((TEXT + "\n" + many).encode(), [peter])
    # Go indexes bytes: position 60 of the line is past the em dash's 3 bytes.
    line = PETER_SIG.encode()
    forged = (TEXT + "\n").encode() + line[:60] + b"ABCD" + line[60:]
    with pytest.raises(InvalidSignature, match="PeterNeumann\\+c74f20a3"):
        note.open_note(forged, [peter])
    enoch_line = ENOCH_SIG.encode()
    enoch_abcd = (enoch_line[:60] + b"ABCD" + enoch_line[60:]).decode()
    duplicated = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = note.open_note(duplicated.encode(), [peter])
    assert opened.sigs == (PETER,)
    assert opened.unverified == (ENOCH, note.Signature("EnochRoot", 0xAF0CFE78, enoch_abcd.split()[-1]))
    bad_messages = [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ]
    for bad in [m.encode() for m in bad_messages] + [b"\xff" + (TEXT + "\n" + PETER_SIG).encode()]:
        with pytest.raises(NoteError):
            note.open_note(bad, [peter])


# C2SP/C2SP, signed-note.md: its example (no public key is published: its shape is checked).
C2SP_NOTE = """Ognuno sta solo sul cuor della terra
trafitto da un raggio di sole:

ed è subito sera.

— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=
"""  # noqa: E501 (the spec's line, whole)


def test_the_c2sp_note_example():
    parsed = note.parse_note(C2SP_NOTE.encode())
    assert parsed.text == "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    (sig,) = parsed.unverified
    assert (sig.name, sig.key_id) == ("quasimodo.example/salvatore", 0x367BA04B)
    assert len(note._b64decode(sig.base64)) == 4 + 64
    with pytest.raises(NoteError, match="no verifiable signatures"):
        note.open_note(C2SP_NOTE.encode(), [Verifier.from_key(PETER_VKEY)])


# C2SP/C2SP, tlog-checkpoint.md: its example checkpoint (no public key published either).
C2SP_CHECKPOINT = """example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
"""  # noqa: E501 (the spec's line, whole)


def test_the_c2sp_checkpoint_example():
    parsed = note.parse_note(C2SP_CHECKPOINT.encode())
    checkpoint = Checkpoint.parse(parsed.text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert checkpoint.root.hex() == "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    assert checkpoint.text() == parsed.text
    assert parsed.unverified[0].key_id == 0x033DE0AE


def test_a_real_go_checksum_database_checkpoint():
    """transparency-dev/formats, log/note_test.go (TestSumDBNoteParsing): a tree head of
    sum.golang.org, under its published key."""
    key = Verifier.from_key("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
    signed = (
        "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
        "— sum.golang.org "
        "Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
    ).encode()
    checkpoint = open_checkpoint(signed, key, "go.sum database tree")
    assert (checkpoint.size, checkpoint.root.hex()[:8]) == (6476701, "99bf102d")
    with pytest.raises(CheckpointError, match="not of"):
        open_checkpoint(signed, key, "Go rocks but I might have the wrong ID")
    with pytest.raises(InvalidSignature):
        open_checkpoint(signed.replace(b"6476701", b"6476702"), key, "go.sum database tree")
    with pytest.raises(NoteError):
        open_checkpoint(signed, Verifier.from_key(PETER_VKEY), "go.sum database tree")


@pytest.mark.parametrize(
    "text",
    [
        "origin\n1\n" + "A" * 43 + "=",  # no final newline
        "origin\n1\n",  # no root
        "\n1\n" + "A" * 43 + "=\n",  # empty origin
        "origin\n01\n" + "A" * 43 + "=\n",  # leading zero
        "origin\n+1\n" + "A" * 43 + "=\n",
        "origin\n1 \n" + "A" * 43 + "=\n",
        "origin\n18446744073709551616\n" + "A" * 43 + "=\n",  # 2^64
        "origin\n1\n" + "A" * 42 + "==\n",  # 31 bytes
        "origin\n1\n" + "A" * 43 + "\n",  # unpadded
        "origin\n1\n" + "A" * 42 + "B=\n",  # non-canonical trailing bits
        "origin\n1\n" + "A" * 43 + "=\n\n",  # an empty extension line
    ],
)
def test_malformed_checkpoints(text):
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


text_line = st.text(st.characters(min_codepoint=32, blacklist_categories=["Cs"]), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(text_line, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32), st.lists(text_line, max_size=3))
def test_a_checkpoint_has_one_spelling(origin, size, root, extensions):
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(checkpoint.text()) == checkpoint


SIGNER = Signer.from_key(PETER_SKEY)


@settings(max_examples=50, deadline=None)
@given(st.lists(text_line, min_size=1, max_size=4), st.integers(0, 200), st.data())
def test_a_signed_note_opens_and_any_change_breaks_it(lines, position, data):
    text = "".join(line + "\n" for line in lines)
    signed = note.sign(text, SIGNER)
    assert note.open_note(signed, [SIGNER.verifier()]).text == text
    body = text.encode()
    i = position % len(body)
    changed = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    with pytest.raises(NoteError):
        note.open_note(changed + signed[len(body) :], [SIGNER.verifier()])


def test_the_docs_example_checkpoint():
    """docs/transparency.md shows a signed checkpoint of the draw's golden log: it is this one."""
    name = "lottery.example/log"
    signer = Signer.from_seed(name, hashlib.sha256(b"lottery docs example key").digest())
    vkey = "lottery.example/log+cfff56a7+AZUX59zw7uMDEYgD1Ro7ufUuIdFLJJSAK5KNWyrxTpSx"
    assert signer.verifier().vkey() == vkey
    root = bytes.fromhex("94b16ee5a989038c01184f513775c91bb78541cd6c544ea039abe23327dca64c")  # test_tlog_draw's
    signed = sign_checkpoint(Checkpoint(name, 4, root), signer).decode()
    docs = (Path(__file__).parents[2] / "docs" / "transparency.md").read_text(encoding="utf-8")
    assert f"```\n{signed}```" in docs
    assert vkey in docs
