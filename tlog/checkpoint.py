"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the signed head of the log.

The note text is three lines and optional extension lines, each ending in a newline::

    <origin>
    <tree size, decimal, no leading zero>
    <base64 of the 32-byte RFC 9162 root>
    [<extension line>...]

signed by the log's key (its name SHOULD be the origin) as a signed note (tlog.note).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tlog import b64, note
from tlog.merkle import HASH_SIZE

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
MAX_SIZE = 2**64 - 1


class CheckpointError(ValueError):
    """Not a checkpoint, or not one of the log the caller trusts."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line in (self.origin, *self.extensions):
            if not line or "\n" in line or any(ch < " " for ch in line):
                raise CheckpointError(f"a checkpoint line is non-empty text: {line!r}")
        if not 0 <= self.size <= MAX_SIZE:
            raise CheckpointError(f"a tree size is 0 to 2^64-1 (got {self.size})")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(f"a root is {HASH_SIZE} bytes (got {len(self.root)})")

    def text(self) -> str:
        lines = (self.origin, str(self.size), b64.encode(self.root), *self.extensions)
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The inverse of :meth:`text`: exactly one spelling of each checkpoint."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not _SIZE.fullmatch(lines[1]):
            raise CheckpointError("malformed checkpoint")
        try:
            root = b64.decode(lines[2])
        except ValueError:
            raise CheckpointError("malformed checkpoint root") from None
        return cls(lines[0], int(lines[1]), root, tuple(lines[3:-1]))


def sign_checkpoint(checkpoint: Checkpoint, signer: note.Signer) -> bytes:
    return note.sign(checkpoint.text(), signer)


def open_checkpoint(message: bytes, log_key: note.Verifier, origin: str) -> Checkpoint:
    """The checkpoint in ``message`` if the log's key signed it and it names ``origin``.

    Other signatures (a witness's, a rotated key's) are ignored, as the spec asks; a bad
    signature by the log's key rejects it (note.InvalidSignature).
    """
    checkpoint = Checkpoint.parse(note.open_note(message, [log_key]).text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint of {checkpoint.origin!r}, not of {origin!r}")
    return checkpoint
