"""The CSV fast path: one compiled RE2 ``fullmatch`` validates a whole body of plain bet lines.

Most chunks are in the plain shape of real agency files: no quoting, no header, no blank
lines, names without surrounding spaces, numbers without leading zeros. For those, one RE2
automaton over the raw UTF-8 bytes checks every rule of app/domain.py at once (no decoding,
no per-bet Python), and the stored rows are the lines with the agency in front. Anything the
pattern does not match, valid or not, goes down the general path in app/ingest.py, which
gives the same rows and names every problem; tests/unit/test_ingest_fastpath.py checks that
both agree. So the pattern may refuse a valid body, never accept one the general path refuses.

Exactness, rule by rule:
- names: the character classes come from this Python's own tables (``str.isprintable``,
  ``str.isspace``), not RE2's ``\\p{..}``, which follow a newer Unicode; a name's first and
  last characters are not ``str.strip()`` whitespace (so trimming changes nothing), and the
  first is not a formula prefix. Their length (at most 100 characters) is checked apart,
  because a counted repeat of a class this big costs tens of MB per process.
- birthdates: every real Gregorian date from 0001-01-01 to the latest birthdate (today at
  UTC+14), spelled out per year and month, so the pattern is rebuilt when that day changes.
- documents and numbers: ASCII digits; numbers without leading zeros, so the text stored is
  the text received.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

import re2

from app.domain import FORMULA_PREFIXES, MAX_DOCUMENT_DIGITS, MAX_NAME_LENGTH, MAX_NUMBER, latest_birthdate

Body = bytes | bytearray  # a request body as read (app/deps.py reads it into a bytearray: no copy)

log = logging.getLogger("lottery")

_CSV_SPECIAL = ',"'  # the only printable characters that change how csv reads or writes a field


@functools.cache
def _name_classes() -> tuple[str, str, str]:
    """RE2 classes for a name's first, middle and last characters, from this Python's tables."""
    # Every Zs character is also str.isspace(): asking unicodedata only about those is fast.
    allowed = [c for c in map(chr, range(0x110000)) if c.isprintable() or (c.isspace() and _is_zs(c))]
    middle = [c for c in allowed if c not in _CSV_SPECIAL]
    last = [c for c in middle if not c.isspace()]
    first = [c for c in last if c not in FORMULA_PREFIXES]
    return _char_class(first), _char_class(middle), _char_class(last)


def _is_zs(char: str) -> bool:
    return unicodedata.category(char) == "Zs"  # printable text for the domain, though not isprintable()


def _char_class(chars: Iterable[str]) -> str:
    points = sorted(map(ord, chars))
    ranges: list[list[int]] = []
    for point in points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    body = "".join(rf"\x{{{lo:x}}}" if lo == hi else rf"\x{{{lo:x}}}-\x{{{hi:x}}}" for lo, hi in ranges)
    return f"[{body}]"


@functools.lru_cache(maxsize=4096)
def _alternation(strings: frozenset[str]) -> str:
    """A regex matching exactly ``strings`` (all of one length), factored like a trie."""
    if strings == {""}:
        return ""
    by_first: dict[str, set[str]] = defaultdict(set)
    for text in strings:
        by_first[text[0]].add(text[1:])
    by_rest: dict[str, list[str]] = defaultdict(list)
    for first, rests in by_first.items():
        by_rest[_alternation(frozenset(rests))].append(first)
    parts = [_class_of(firsts) + rest for rest, firsts in sorted(by_rest.items())]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _class_of(chars: list[str]) -> str:
    return re.escape(chars[0]) if len(chars) == 1 else "[" + "".join(sorted(re.escape(c) for c in chars)) + "]"


def _days(year: int) -> Iterable[date]:
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


def dates_up_to(latest: date) -> str:
    """A regex for exactly the ISO strings of dates from 0001-01-01 to ``latest``."""
    common = frozenset(d.isoformat()[5:] for d in _days(2001))  # month-days of every year (no Feb 29)
    parts = []
    if latest.year > 1:
        years = range(1, latest.year)
        parts.append(_alternation(frozenset(f"{y:04d}" for y in years)) + "-" + _alternation(common))
        leap = frozenset(f"{y:04d}" for y in years if date(y, 3, 1) - date(y, 2, 1) == timedelta(days=29))
        parts.append(_alternation(leap) + "-02-29")
    this_year = frozenset(d.isoformat()[5:] for d in _days(latest.year) if d <= latest)
    parts.append(f"{latest.year:04d}-" + _alternation(this_year))
    return "(?:" + "|".join(parts) + ")"


def body_pattern(latest: date) -> str:
    first, middle, last = _name_classes()
    name = f"{first}(?:{middle}*{last})?"
    number = f"(?:0|[1-9][0-9]{{0,{len(str(MAX_NUMBER)) - 1}}})"  # MAX_NUMBER is all nines: 9999
    line = f"{name},{name},[0-9]{{1,{MAX_DOCUMENT_DIGITS}}},{dates_up_to(latest)},{number}"
    return f"(?:{line}\\r?\\n)*{line}(?:\\r?\\n)?"


def _options() -> re2.Options:
    options = re2.Options()
    options.never_capture = True
    return options


# Name length, checked apart from the pattern. A field of more than MAX_NAME_LENGTH bytes may
# be a name of more than MAX_NAME_LENGTH characters: those few are decoded and counted. They
# are found by mapping every byte to "\n" (a field separator) or "x" (anything else) and
# searching for a run of x's: two C loops, twice as fast as a second automaton.
_SEPARATORS = bytes(0x0A if byte in b",\n" else 0x78 for byte in range(256))
_LONG_RUN = b"x" * (MAX_NAME_LENGTH + 1)


def _has_long_name(body: Body) -> bool:
    marks = body.translate(_SEPARATORS)
    start = marks.find(_LONG_RUN)  # the leftmost run of a field is where that field starts
    while start != -1:
        end = marks.find(b"\n", start)
        end = len(marks) if end == -1 else end
        if len(body[start:end].decode()) > MAX_NAME_LENGTH:
            return True
        start = marks.find(_LONG_RUN, end)
    return False


class _Validator:
    """The compiled body pattern for one latest birthdate; rebuilt when that day changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[date, re2._Regexp] | None = None  # one tuple: threads never see a mix

    def fullmatch(self, body: Body, latest: date) -> bool:
        current = self._current
        if current is None or current[0] != latest:  # any change, even a clock set back
            with self._lock:
                current = self._current
                if current is None or current[0] != latest:
                    started = time.process_time()
                    current = self._current = (latest, re2.compile(body_pattern(latest), _options()))
                    re2.purge()  # re2.compile caches every pattern it made: let yesterday's go
                    log.info(
                        "action: validador_csv | result: success | fechas_hasta: %s | proceso: %d | cpu_segundos: %.2f",
                        latest,
                        os.getpid(),
                        time.process_time() - started,
                    )
        return current[1].fullmatch(body) is not None


_VALIDATOR = _Validator()


def prepare() -> None:
    """Build today's validator now. gunicorn's master calls this before it forks (gunicorn.conf.py):
    the workers inherit it, instead of each spending ~0.2 s of CPU (the name classes: every code
    point asked) on its first chunk, in the middle of a round (issue 15)."""
    _VALIDATOR.fullmatch(b"", latest_birthdate())


def parse_plain(body: Body, agency: int) -> tuple[bytes, int] | None:
    """``(stored rows, count)`` if ``body`` is plain bet lines that are all valid; else None."""
    if not _VALIDATOR.fullmatch(body, latest_birthdate()):
        return None
    if _has_long_name(body):
        return None
    if b"\r" in body:  # the pattern lets "\r" in only right before "\n"
        body = body.replace(b"\r\n", b"\n")
    if not body.endswith(b"\n"):
        body += b"\n"
    prefix = b"%d," % agency
    tagged = body.replace(b"\n", b"\n" + prefix)  # each line's end gains the next line's prefix
    # One copy more, not two: a bytearray body's replace is a bytearray, which prefix + ... and
    # a slice would each copy whole (issue 22: 50 µs of a 5,000-bet chunk).
    rows = b"".join((prefix, memoryview(tagged)[: -len(prefix)]))
    return rows, (len(tagged) - len(body)) // len(prefix)
