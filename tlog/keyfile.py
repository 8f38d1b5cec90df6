"""The log's signing key on disk: one line, ``PRIVATE+KEY+name+hexkeyid+base64(0x01 ‖ seed)``.

Written once with mode 0600 (never over an existing file); read only if no one but its owner
(and its group, read-only: a service group) can read or change it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tlog.note import NoteError, Signer

_TOO_OPEN = stat.S_IRWXO | stat.S_IWGRP  # others: any access; group: write


class KeyFileError(ValueError):
    """A key file that is missing, shared too widely, or not a signer key."""


def write_new_key(path: str | Path, name: str) -> Signer:
    """Make a new key named ``name`` in a new file at ``path`` (mode 0600); FileExistsError if
    the file exists: a key is never replaced by accident. The file appears whole (written aside,
    then linked in): a process starting at the same time never reads half a key."""
    import secrets  # only here, as the other modules of tlog/ that draw (docs/transparency.md)

    signer = Signer.generate(name)
    target = Path(path)
    aside = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask: the mode is exactly 0600
            os.write(fd, (signer.skey() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(aside, target)  # atomic, and FileExistsError when a key is there (a link is never followed)
    finally:
        os.unlink(aside)
    return signer


def load_signer(path: str | Path) -> Signer:
    """The signer in the key file at ``path``; KeyFileError if others may read it, or it is not
    a regular file holding exactly one signer key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise KeyFileError(f"cannot open the log key {path}: {error.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"the log key {path} is not a regular file")
        if mode & _TOO_OPEN:
            raise KeyFileError(
                f"the log key {path} has mode {stat.S_IMODE(mode):04o}: others may read or change it (chmod 600 {path})"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
        if text.count("\n") != 1 or not text.endswith("\n"):
            raise NoteError("not one line")
        return Signer.from_key(text[:-1])
    except (UnicodeDecodeError, NoteError):
        raise KeyFileError(f"the log key {path} does not hold a signer key (PRIVATE+KEY+...)") from None
