"""The lottery's domain: what a bet is, when it wins, and the rules a bet must follow.

No HTTP and no locking here. ``store_bets`` / ``load_bets`` are the course's helpers over the
``bets.csv`` row format ``agency,first_name,last_name,document,birthdate,number``; the server's
store (app/store) uses the same row format through :func:`encode_rows`.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

WINNING_NUMBER = 7574
MAX_NAME_LENGTH = 100
FORMULA_PREFIXES = frozenset("=+-@")
MAX_NUMBER = 9999  # numbers are 0..MAX_NUMBER
MAX_AGENCIES = 100_000  # the most agencies a round may have (LOTTERY_AGENCIES, POST /rounds): a country's
MAX_DOCUMENT_DIGITS = 10
FIELDS = ("first_name", "last_name", "document", "birthdate", "number")

DOCUMENT_PATTERN = rf"[0-9]{{1,{MAX_DOCUMENT_DIGITS}}}"  # ASCII digits only, kept as text (leading zeros too)
_DOCUMENT = re.compile(DOCUMENT_PATTERN)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMBER = re.compile(rf"[0-9]{{1,{len(str(MAX_NUMBER))}}}")


@dataclass(frozen=True, slots=True)
class Bet:
    agency: int
    first_name: str
    last_name: str
    document: str
    birthdate: date
    number: int


def has_won(bet: Bet, winning_number: int = WINNING_NUMBER) -> bool:
    return bet.number == winning_number


class InvalidBet(ValueError):
    """A bet broke one or more rules: ``problems`` holds ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


# A row ready to store: (agency, first_name, last_name, document, birthdate ISO, number).
Row = tuple[int, str, str, str, str, int]


_latest: tuple[int, date] = (-1, date.min)  # (the second it was worked out at, the date)


def latest_birthdate() -> date:
    """The latest date that is already 'today' somewhere on Earth (UTC+14).

    A person born today in Kiribati must not be rejected because the server runs on UTC.
    Worked out once per second of the clock: every chunk asks (issue 22).
    """
    global _latest
    second = int(time.time())
    latest = _latest  # one read: another thread may replace it meanwhile
    if latest[0] != second:
        latest = _latest = (second, (datetime.fromtimestamp(second, UTC) + timedelta(hours=14)).date())
    return latest[1]


def _clean_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    name = value.strip()
    if not name:
        raise ValueError("must not be empty")
    if name[0] in FORMULA_PREFIXES:
        # Spreadsheet formula injection: bets.csv opened in a spreadsheet would run
        # "=HYPERLINK(...)". No real name starts with these, so refuse rather than alter it.
        raise ValueError("must not start with =, +, - or @ (it would run as a spreadsheet formula)")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters (got {len(name)})")
    # str.isprintable() is False for control and format characters (newline, tab, NUL...)
    # and also for spaces other than U+0020; those spaces (category Zs, e.g. the no-break
    # space) are printable text, so only fall back to the per-character check when needed.
    if not name.isprintable() and not all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in name):
        raise ValueError("must not contain control characters (newlines, tabs, ...)")
    return name


def _clean_document(value: object) -> str:
    if not isinstance(value, str) or not _DOCUMENT.fullmatch(value):
        raise ValueError(f'must be a string of 1 to {MAX_DOCUMENT_DIGITS} digits, e.g. "30904465"')
    return value


@functools.lru_cache(maxsize=65536)
def _parse_iso_date(value: str) -> date:
    # Cached: real files repeat birthdates a lot, and this sits on the ingest hot path.
    return date.fromisoformat(value)


def _clean_birthdate(value: object, latest: date) -> str:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        born = _parse_iso_date(value)
    except ValueError:
        raise ValueError("is not a valid calendar date") from None
    if born > latest:
        raise ValueError("must not be in the future")
    return value


def _clean_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer from 0 to {MAX_NUMBER}")
    if not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"must be an integer from 0 to {MAX_NUMBER}")
    return value


def parse_number_text(value: str) -> int:
    """A number written in CSV text: 1 to 4 ASCII digits."""
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"must be an integer from 0 to {MAX_NUMBER}")
    return int(value)


def validate_bet(
    agency: int,
    first_name: object,
    last_name: object,
    document: object,
    birthdate: object,
    number: object,
    latest: date,
) -> Row:
    """Check every rule and return the row to store; raise :class:`InvalidBet` listing all problems."""
    try:  # fast path: a valid bet costs one call per field and nothing else
        return (
            agency,
            _clean_name(first_name),
            _clean_name(last_name),
            _clean_document(document),
            _clean_birthdate(birthdate, latest),
            _clean_number(number),
        )
    except ValueError:
        pass
    problems: list[tuple[str, str]] = []
    for field, check in (
        ("first_name", lambda: _clean_name(first_name)),
        ("last_name", lambda: _clean_name(last_name)),
        ("document", lambda: _clean_document(document)),
        ("birthdate", lambda: _clean_birthdate(birthdate, latest)),
        ("number", lambda: _clean_number(number)),
    ):
        try:
            check()
        except ValueError as error:
            problems.append((field, str(error)))
    raise InvalidBet(problems)


def encode_rows(rows: Iterable[Row]) -> bytes:
    """Serialize rows in the stored format, once per chunk: UTF-8, LF, csv-module quoting."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def decode_rows(payload: bytes) -> list[Row]:
    """The inverse of :func:`encode_rows`."""
    return [(int(a), f, l, d, b, int(n)) for a, f, l, d, b, n in csv.reader(io.StringIO(payload.decode("utf-8")))]


def row_to_bet(row: list[str]) -> Bet:
    agency, first_name, last_name, document, birthdate, number = row
    return Bet(int(agency), first_name, last_name, document, date.fromisoformat(birthdate), int(number))


def bet_to_row(bet: Bet) -> Row:
    return (bet.agency, bet.first_name, bet.last_name, bet.document, bet.birthdate.isoformat(), bet.number)


def store_bets(path: Path, bets: Iterable[Bet]) -> None:
    """The course's helper: append bets to a bets.csv file (no locking: the store locks)."""
    with open(path, "ab") as f:
        f.write(encode_rows(bet_to_row(b) for b in bets))


def load_bets(path: Path) -> Iterator[Bet]:
    """The course's helper: stream the bets of a bets.csv file, one at a time (never whole)."""
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            yield row_to_bet(row)
