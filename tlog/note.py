"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, as Go's golang.org/x/mod/sumdb/note.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <name> base64(key id ‖ signature)``. A key is named ``name`` and identified by
``key id = SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)[:4]`` (big-endian uint32). Key strings:

- verifier: ``name+hexkeyid+base64(0x01 ‖ 32-byte public key)``
- signer:   ``PRIVATE+KEY+name+hexkeyid+base64(0x01 ‖ 32-byte Ed25519 seed)``

``cryptography`` is imported only by the functions that sign, verify or make a key; where it is
not installed (the agency tool), verifying falls back to tlog/ed25519.py, in pure Python.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tlog import b64

ALG_ED25519 = 1
MAX_SIGNATURES = 100  # as Go's; the spec asks to accept at least 16
_SIG_PREFIX = "— "  # em dash (U+2014), space
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A malformed note or key, or a note no trusted key signed."""


class InvalidSignature(NoteError):
    """A known key's signature does not verify: the whole note is rejected."""


def _b64decode(text: str) -> bytes:
    try:
        return b64.decode(text)
    except ValueError:
        raise NoteError("bad base64") from None


def valid_name(name: str) -> bool:
    """Non-empty, no Unicode space and no plus (as the spec and Go's isValidName)."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, typed_public_key: bytes) -> int:
    """SHA-256(name ‖ "\\n" ‖ type ‖ public key)[:4], big-endian."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + typed_public_key).digest()[:4], "big")


def _chop(text: str, sep: str) -> tuple[str, str]:
    head, found, tail = text.partition(sep)
    return (head, tail) if found else (text, "")


@dataclass(frozen=True, slots=True)
class Verifier:
    name: str
    key_id: int
    public_key: bytes  # the 32-byte Ed25519 key, without its type byte

    @classmethod
    def from_key(cls, vkey: str) -> Verifier:
        """Parse ``name+hexkeyid+base64(0x01 ‖ pub)``; NoteError for any other string."""
        name, rest = _chop(vkey, "+")
        hex_id, key64 = _chop(rest, "+")
        key = _b64decode(key64) if _HEX_ID.fullmatch(hex_id) else b""
        if not valid_name(name) or not key:
            raise NoteError("malformed verifier key")
        if int(hex_id, 16) != key_id(name, key):
            raise NoteError("verifier key id does not match its name and key")
        if key[0] != ALG_ED25519 or len(key) != 33:
            raise NoteError("unknown verifier algorithm")
        return cls(name, int(hex_id, 16), key[1:])

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{b64.encode(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            from cryptography.exceptions import InvalidSignature as BadSignature
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:  # the agency tool (pure Python): the same check, slower (tlog/ed25519.py)
            from tlog import ed25519

            return ed25519.verify(self.public_key, message, signature)
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except BadSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    name: str
    key_id: int
    seed: bytes = field(repr=False)  # the 32-byte Ed25519 private key (RFC 8032's seed)
    _key: Any = field(default=None, init=False, repr=False, compare=False)  # cryptography's, once made

    @classmethod
    def from_key(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+name+hexkeyid+base64(0x01 ‖ seed)``; NoteError for any other."""
        private, rest = _chop(skey, "+")
        key_word, rest = _chop(rest, "+")
        name, rest = _chop(rest, "+")
        hex_id, key64 = _chop(rest, "+")
        key = _b64decode(key64) if _HEX_ID.fullmatch(hex_id) else b""
        if (private, key_word) != ("PRIVATE", "KEY") or not valid_name(name) or not key:
            raise NoteError("malformed signer key")
        if key[0] != ALG_ED25519 or len(key) != 33:
            raise NoteError("unknown signer algorithm")
        signer = cls.from_seed(name, key[1:])
        if signer.key_id != int(hex_id, 16):  # the id names the public key: checked once it is derived
            raise NoteError("signer key id does not match its name and key")
        return signer

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new key named ``name``, its seed from the OS's CSPRNG."""
        import secrets

        return cls.from_seed(name, secrets.token_bytes(32))

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        if not valid_name(name):
            raise NoteError(f"a key name is non-empty, without spaces or '+': {name!r}")
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        return cls(name, key_id(name, bytes([ALG_ED25519]) + _public_key(seed)), seed)

    def skey(self) -> str:
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{b64.encode(bytes([ALG_ED25519]) + self.seed)}"

    def public_key(self) -> bytes:
        return _public_key(self.seed)

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key())

    def sign(self, message: bytes) -> bytes:
        key = self._key
        if key is None:  # made once: making it is half a signature's cost (25 of 50 µs)
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            key = Ed25519PrivateKey.from_private_bytes(self.seed)
            object.__setattr__(self, "_key", key)
        signature: bytes = key.sign(message)
        return signature


def _public_key(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    key_id: int
    base64: str  # base64(key id ‖ signature), as on its line

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str  # ends in a newline; the blank line before the signatures is not part of it
    sigs: tuple[Signature, ...] = ()  # verified by a trusted key
    unverified: tuple[Signature, ...] = ()  # by keys not trusted here (ignored, kept)


def _check_text(text: str) -> None:
    if not text.endswith("\n") or any(ch < " " and ch != "\n" for ch in text):
        raise NoteError("malformed note")


def sign(text: str, *signers: Signer) -> bytes:
    """The signed note: ``text``, a blank line, one signature line per signer, in order."""
    _check_text(text)
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        if not valid_name(signer.name):
            raise NoteError("invalid signer")
        sig = signer.key_id.to_bytes(4, "big") + signer.sign(message)
        lines.append(Signature(signer.name, signer.key_id, b64.encode(sig)).line())
    return (text + "\n" + "".join(lines)).encode("utf-8")


def open_note(message: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and check its signatures against the trusted ``verifiers``.

    As the spec and Go's note.Open: unknown keys' signatures are kept aside (unverified); a
    known key's bad signature rejects the note (InvalidSignature); a note no known key signed
    is rejected (NoteError); duplicates are dropped; more than MAX_SIGNATURES is malformed.
    """
    parsed = parse_note(message)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)
    sigs: list[Signature] = []
    unverified: list[Signature] = []
    for sig in parsed.unverified:
        candidates = known.get((sig.name, sig.key_id), [])
        if not candidates:
            unverified.append(sig)
            continue
        if len(candidates) > 1:  # as Go's VerifierList: only when a signature needs the key
            raise NoteError(f"ambiguous key {sig.name}+{sig.key_id:08x}")
        if any((s.name, s.key_id) == (sig.name, sig.key_id) for s in sigs):
            continue  # one signature per key counts
        if not candidates[0].verify(parsed.text.encode("utf-8"), _b64decode(sig.base64)[4:]):
            raise InvalidSignature(f"invalid signature for key {sig.name}+{sig.key_id:08x}")
        sigs.append(sig)
    if not sigs:
        raise NoteError("note has no verifiable signatures")
    return Note(parsed.text, tuple(sigs), tuple(unverified))


def parse_note(message: bytes) -> Note:
    """The text and signature lines of a signed note, none verified (all in ``unverified``,
    identical lines once); NoteError if it is malformed."""
    try:
        whole = message.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("malformed note") from None
    if any(ch < " " and ch != "\n" for ch in whole):
        raise NoteError("malformed note")
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed note")
    sigs: list[Signature] = []
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed note")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed note")
        name, encoded = _chop(line[len(_SIG_PREFIX) :], " ")
        raw = _b64decode(encoded) if encoded else b""
        if not valid_name(name) or len(raw) < 5:
            raise NoteError("malformed note")
        sig = Signature(name, int.from_bytes(raw[:4], "big"), encoded)
        if sig not in sigs:
            sigs.append(sig)
    return Note(text, (), tuple(sigs))
