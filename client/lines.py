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

import codecs

TYPE_CHECKING = False  # typing's own flag costs an import: the uploader's start-up is counted (issue 15)
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from hashlib import _Hash
    from pathlib import Path

    FilePath = str | Path  # the bets file, as given on the command line or as a Path

READ_BLOCK = 8 << 20  # a 100k-bet file (4 MB) in one read: no line carried between blocks
HEADER = ["first_name", "last_name", "document", "birthdate", "number"]
BOM = b"\xef\xbb\xbf"
_ALL_BUT_COMMA_CR_LF = bytes(b for b in range(256) if b not in b",\r\n")


class MalformedFile(Exception):
    """The file cannot be uploaded as it is; the message names the file and line."""


class Block:
    """Consecutive bet lines of the file (not always adjacent lines: skipped lines are gone).

    ``data`` holds them LF-normalized, each ended by ``\\n``, exactly as they are sent; bodies of
    any run of them are cut from it by offset (no object per line).
    """

    __slots__ = ("data", "numbers", "count", "_index", "_offset")

    def __init__(self, data: bytes, numbers: Sequence[int]):
        self.data = data
        self.numbers = numbers  # the 1-based file line number of each bet line
        self.count = len(numbers)
        self._index = self._offset = 0  # a cursor: bodies are mostly cut in increasing order

    def offset(self, index: int) -> int:
        """Where bet line ``index`` of the block starts in ``data``."""
        if index == self.count:
            return len(self.data)
        if index < self._index:
            self._index = self._offset = 0
        self._offset = skip_lines(self.data, self._offset, index - self._index, self.count - self._index)
        self._index = index
        return self._offset

    def body(self, start: int, end: int) -> bytes:
        """Bet lines ``[start, end)`` of the block, as sent."""
        a = self.offset(start)
        return self.data[a : self.offset(end)]

    @property
    def lines(self) -> list[bytes]:
        return self.data.split(b"\n")[:-1]


def skip_lines(data: bytes, pos: int, n: int, lines_left: int) -> int:
    """The offset ``n`` lines after ``pos``, where ``data[pos:]`` holds ``lines_left`` whole lines.

    Guessed from the mean line length and corrected by counting newlines (a C loop over the
    bytes between, once or twice), then stepped to the exact newline by ``find``: about half the
    CPU of matching the lines one by one, and no object per line."""
    if n <= 0:
        return pos
    # Invariant: the n-th newline after pos lies in [lo, hi); [pos, lo) holds lo_lines of them, [pos, hi) hi_lines.
    lo, lo_lines, hi, hi_lines = pos, 0, len(data), lines_left
    for _ in range(8):  # a few rounds narrow any usual file to a few lines; odd ones finish below
        if hi_lines - lo_lines <= 16:
            break
        guess = lo + (hi - lo) * (n - lo_lines) // (hi_lines - lo_lines)
        if not lo < guess < hi:
            break
        counted = lo_lines + data.count(b"\n", lo, guess)
        if counted < n:
            lo, lo_lines = guess, counted
        else:
            hi, hi_lines = guess, counted
    if hi_lines - n < n - lo_lines:  # nearer the end: step back to the n-th newline
        for _ in range(hi_lines - n + 1):
            hi = data.rindex(b"\n", lo, hi)
        return hi + 1
    for _ in range(n - lo_lines):
        lo = data.index(b"\n", lo) + 1
    return lo


def raw_blocks(path: FilePath, digest: _Hash | None = None) -> Iterator[bytes]:
    """Whole lines ending in ``\\n``, a block at a time: the file's bytes, in order.

    ``digest`` (a hashlib object) is fed the raw bytes as read. A last line without its
    terminator gets one. Errors opening the file are :class:`MalformedFile`.
    """
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
                cut = raw.rfind(b"\n") + 1
                if not cut:
                    carry += raw
                    continue
                # One copy at most: the carried start of a line and the whole lines just read.
                data = raw if not carry and cut == len(raw) else b"".join((carry, memoryview(raw)[:cut]))
                carry = raw[cut:]
            else:
                if not carry:
                    return
                data = carry + b"\n"
            yield data
            if not raw:
                return


def plain(raw: bytes) -> tuple[bytes, int] | None:
    """(LF-normalized bytes, line count) when every line of ``raw`` is an unquoted five-field bet line
    and all end alike (all LF or all CRLF); else None, for the line-by-line way.

    Deleting every byte but commas, CR and LF must leave ",,,,\\n" (or ",,,,\\r\\n") once per line:
    that excludes blank lines and a CR anywhere but before the LF; headers hold an underscore,
    quoted fields a quote. Two translates, all in C.
    """
    if b'"' in raw or b"_" in raw:
        return None
    shape = raw.translate(None, _ALL_BUT_COMMA_CR_LF)
    if shape.endswith(b"\r\n"):
        count = len(shape) // 6
        return (
            (raw.replace(b"\r", b""), count) if shape == b",,,,\r\n" * count else None
        )  # replace: memchr, 3x translate
    count = len(shape) // 5
    return (raw, count) if shape == b",,,,\n" * count else None


def bet_blocks(path: FilePath, digest: _Hash | None = None) -> Iterator[Block]:
    """The file's bet lines, a block at a time, checked: a malformed line raises MalformedFile."""
    line = 1  # the file line number of the block's first line
    for raw in raw_blocks(path, digest):
        if line == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        fast = plain(raw)
        if fast is not None:
            data, count = fast
            if not data.isascii():
                _check_utf8(path, line, data)
            yield Block(data, range(line, line + count))
        else:
            data = raw.replace(b"\r\n", b"\n")
            block, count = _classify(path, line, data)
            yield block
        line += count


UTF8_PIECE = 1 << 16


def _check_utf8(path: FilePath, line: int, data: bytes) -> None:
    """MalformedFile naming the first line of ``data`` that is not UTF-8.

    Decoded a piece at a time (no copy: memoryview slices) and the text thrown away: the same
    verdict as decoding the whole block, for less CPU than building a block-sized string."""
    decode = codecs.utf_8_decode
    view, start, size = memoryview(data), 0, len(data)
    try:
        while start < size:
            end = start + UTF8_PIECE
            start += decode(view[start:end], "strict", end >= size)[1]  # a character cut at ``end`` waits
    except UnicodeDecodeError as error:
        number = line + data.count(b"\n", 0, start + error.start)
        raise MalformedFile(f"{path}:{number}: malformed CSV: not valid UTF-8") from None


def _classify(path: FilePath, line: int, data: bytes) -> tuple[Block, int]:
    """The slow way, for blocks with blank lines, headers, quotes or a malformed line; and its line count."""
    lines: list[bytes] = []
    numbers: list[int] = []
    every = data.split(b"\n")[:-1]
    for number, text in enumerate(every, line):
        kind = line_kind(text, f"{path}:{number}")
        if kind == "bet":
            lines.append(text)
            numbers.append(number)
    return Block(b"\n".join(lines) + b"\n" if lines else b"", numbers), len(every)


def line_kind(text: bytes, where: str = "line") -> str:
    """ "bet", "blank" or "header" for one line without its terminator; MalformedFile otherwise."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFile(f"{where}: malformed CSV: not valid UTF-8") from None
    if not decoded.strip():
        return "blank"
    import csv  # only for lines off the plain path

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
