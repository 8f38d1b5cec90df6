"""An agency file as the protocol sees it: its bet lines, numbered from 0, and nothing else.

CONTRACT-uploads: blank lines (empty or only whitespace), header lines (the field names,
compared after stripping and lower-casing each field, anywhere in the file) and a UTF-8 BOM at
the start never get a bet index and are never sent. A bet line is sent without its terminator
(``\\n`` or ``\\r\\n``), followed by ``\\n``: every body is LF-normalized, so the digest of a
range is the same whichever line endings the file has.

The file is read a block of whole lines at a time and every block of the common shape (no
quotes, no underscore, four commas a line) is handled by C-level bytes methods only; any other
block is classified line by line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_BLOCK = 1 << 20
HEADER = ["first_name", "last_name", "document", "birthdate", "number"]
BOM = b"\xef\xbb\xbf"
_ALL_BUT_COMMA_AND_NEWLINE = bytes(b for b in range(256) if b not in b",\n")


class MalformedFile(Exception):
    """The file cannot be uploaded as it is; the message names the file and line."""


@dataclass(frozen=True)
class Block:
    """Consecutive bet lines of the file (not always adjacent lines: skipped lines are gone)."""

    lines: list[bytes]  # each bet line without its terminator
    numbers: Sequence[int]  # their 1-based line numbers in the file


def raw_blocks(path: Path, digest=None) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, whole lines ending in ``\\n``): the file's bytes, in order.

    ``digest`` (a hashlib object) is fed the raw bytes as read. A last line without its
    terminator gets one. Errors opening the file are :class:`MalformedFile`.
    """
    line = 1
    carry = b""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MalformedFile(f"bets file not found: {path}") from None
    except IsADirectoryError:
        raise MalformedFile(f"bets file is a directory: {path}") from None
    except PermissionError:
        raise MalformedFile(f"bets file not readable: {path}") from None
    with f:
        while True:
            raw = f.read(READ_BLOCK)
            if digest is not None:
                digest.update(raw)
            if raw:
                data = carry + raw if carry else raw
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue
            else:
                if not carry:
                    return
                data = carry + b"\n"
            yield line, data
            line += data.count(b"\n")
            if not raw:
                return


def normalize(data: bytes, first: bool) -> bytes:
    """Whole lines with LF terminators; the BOM gone when ``first``."""
    if first and data.startswith(BOM):
        data = data[len(BOM) :]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    return data


def is_plain(data: bytes) -> bool:
    """True when every line of normalized ``data`` is an unquoted five-field bet line.

    Deleting every byte but commas and newlines must leave ",,,,\\n" once per line, which
    excludes blank lines; headers hold an underscore, quoted fields a quote.
    """
    return (
        b'"' not in data
        and b"_" not in data
        and data.translate(None, _ALL_BUT_COMMA_AND_NEWLINE) == b",,,,\n" * data.count(b"\n")
    )


def bet_blocks(path: Path, digest=None) -> Iterator[Block]:
    """The file's bet lines, a block at a time, checked: a malformed line raises MalformedFile."""
    first = True
    for line, raw in raw_blocks(path, digest):
        data = normalize(raw, first)
        first = False
        if is_plain(data):
            if not data.isascii():
                _check_utf8(path, line, data)
            lines = data.split(b"\n")
            lines.pop()
            yield Block(lines, range(line, line + len(lines)))
        else:
            yield _classify(path, line, data)


def _check_utf8(path: Path, line: int, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = line + data.count(b"\n", 0, error.start)
        raise MalformedFile(f"{path}:{number}: malformed CSV: not valid UTF-8") from None


def _classify(path: Path, line: int, data: bytes) -> Block:
    """The slow way, for blocks with blank lines, headers, quotes or a malformed line."""
    lines: list[bytes] = []
    numbers: list[int] = []
    for number, text in enumerate(data.split(b"\n")[:-1], line):
        kind = line_kind(text, f"{path}:{number}")
        if kind == "bet":
            lines.append(text)
            numbers.append(number)
    return Block(lines, numbers)


def line_kind(text: bytes, where: str = "line") -> str:
    """ "bet", "blank" or "header" for one line without its terminator; MalformedFile otherwise."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFile(f"{where}: malformed CSV: not valid UTF-8") from None
    if not decoded.strip():
        return "blank"
    try:
        fields = next(csv.reader([decoded], strict=True))
    except csv.Error as error:
        raise MalformedFile(f"{where}: malformed CSV: {error}") from None
    if len(fields) != 5:
        raise MalformedFile(
            f"{where}: malformed CSV: {len(fields)} fields, expected 5 (first_name,last_name,document,birthdate,number)"
        )
    if [f.strip().lower() for f in fields] == HEADER:
        return "header"
    return "bet"
