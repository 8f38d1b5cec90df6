"""tlog/ed25519.py, the pure-Python verifier the agency tool uses when ``cryptography`` is absent:
RFC 8032 §7.1's test vectors, and the same verdict as ``cryptography`` on generated signatures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_tlog_note import PETER_SIG, PETER_VKEY, TEXT
from tlog import ed25519

ROOT = Path(__file__).resolve().parents[2]

# RFC 8032 §7.1 (TEST 1, TEST 2, TEST 3, TEST SHA(abc)): secret key, public key, message, signature.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


def _cryptography_verdict(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors_verify_and_every_flipped_bit_fails(secret, public, message, signature) -> None:
    secret, public, message, signature = map(bytes.fromhex, (secret, public, message, signature))
    # The transcription is checked too: cryptography derives the same key and signs the same bytes.
    key = Ed25519PrivateKey.from_private_bytes(secret)
    assert key.sign(message) == signature
    assert ed25519.verify(public, message, signature)
    for i in range(0, 64, 7):  # a flipped bit anywhere in R or S
        bad = bytearray(signature)
        bad[i] ^= 1 << (i % 8)
        assert not ed25519.verify(public, message, bytes(bad))
    assert not ed25519.verify(public, message + b"x", signature)
    assert not ed25519.verify(public[:31], message, signature) and not ed25519.verify(public, message, signature[:63])


def test_a_scalar_past_the_group_order_is_refused() -> None:
    secret, public, message, signature = map(bytes.fromhex, RFC8032[1])
    s = int.from_bytes(signature[32:], "little") + ed25519.L  # the same point: malleable unless refused
    assert not ed25519.verify(public, message, signature[:32] + s.to_bytes(32, "little"))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=200),
    flip=st.none() | st.integers(min_value=0, max_value=64 * 8 + 32 * 8 - 1),
)
def test_the_same_verdict_as_cryptography(seed: bytes, message: bytes, flip: int | None) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = key.sign(message)
    if flip is not None:  # a bit of the signature, or of the public key, flipped
        both = bytearray(signature + public)
        both[flip // 8] ^= 1 << (flip % 8)
        signature, public = bytes(both[:64]), bytes(both[64:])
    assert ed25519.verify(public, message, signature) == _cryptography_verdict(public, message, signature)


def test_a_signed_note_is_opened_without_cryptography() -> None:
    """The agency tool's case: cryptography cannot be imported, tlog.note falls back."""
    probe = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from tlog import note\n"
        f"PETER_VKEY, PETER_SIG, TEXT = {PETER_VKEY!r}, {PETER_SIG!r}, {TEXT!r}\n"
        "v = note.Verifier.from_key(PETER_VKEY)\n"
        "opened = note.open_note((TEXT + '\\n' + PETER_SIG).encode(), [v])\n"
        "assert opened.text == TEXT\n"
        "bad = (TEXT.replace('problem', 'Problem', 1) + '\\n' + PETER_SIG).encode()\n"
        "try:\n"
        "    note.open_note(bad, [v])\n"
        "except note.InvalidSignature:\n"
        "    print('refused')\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography') and sys.modules[m]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "refused\n[]\n"
