"""The CSV fast path (app/csv_fast.py) must agree with the general path on every body it takes.

Bodies are generated to mostly TAKE the fast path (several rows in the shape of real agency
files, every class of code point at a name's edges, every month and day of tricky years, dates
around today at UTC+14, LF and CRLF), plus near misses one edit away. For each, the fast path
either declines (and the general path answers alone) or gives exactly what the general path
gives: the same stored bytes and count, or the same refusal. The run fails if the fast path was
taken in too few examples to mean anything.

    LOTTERY_FUZZ_EXAMPLES=1000000 pytest tests/unit/test_ingest_fastpath.py   # a long run
"""

from __future__ import annotations

import os
import random
import re
import sys
import unicodedata
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import csv_fast, ingest
from app.domain import latest_birthdate
from app.ingest import ParsedChunk, parse_csv_general, parse_plain_csv

EXAMPLES = int(os.environ.get("LOTTERY_FUZZ_EXAMPLES", "3000"))
MIN_FAST_SHARE = 0.6

# -- what the paths answer ----------------------------------------------------------------------


def outcome(parse, body: bytes, agency: int, max_bets: int) -> tuple | None:
    """("stored", payload, count), ("refused", error type), or None when the fast path declines."""
    try:
        parsed = parse(body, agency, max_bets)
    except ingest.IngestError as error:
        return ("refused", type(error).__name__)
    if parsed is None:
        return None
    assert isinstance(parsed, ParsedChunk)
    return ("stored", parsed.payload, parsed.count)


def check_agreement(body: bytes, agency: int = 7, max_bets: int = 10_000) -> bool:
    """Assert both paths agree; True if the fast path took the body."""
    fast = outcome(parse_plain_csv, body, agency, max_bets)
    if fast is None:
        return False
    assert outcome(parse_csv_general, body, agency, max_bets) == fast, body
    return True


# -- code points by class, from this Python's Unicode tables ------------------------------------


def _samples_by_category() -> dict[str, list[str]]:
    """A few code points of every general category: the first, the last and some between."""
    found: dict[str, list[int]] = {}
    for point in range(sys.maxunicode + 1):
        found.setdefault(unicodedata.category(chr(point)), []).append(point)
    return {
        category: [chr(p) for p in (points[:3] + points[-3:] + points[:: max(1, len(points) // 40)])]
        for category, points in found.items()
        if category != "Cs"  # surrogates cannot be sent as UTF-8 at all
    }


BY_CATEGORY = _samples_by_category()
# Characters that are text for the domain (a name may hold and start and end with them, bar the
# CSV and formula characters): letters, marks, numbers, punctuation, symbols, and U+0020-like
# spaces inside a name.
TEXT_CATEGORIES = [c for c in BY_CATEGORY if c[0] in "LMNPS"]
# The alphabet of the course's agency files (../shared/dataset), names only.
DATASET_ALPHABET = " 'ABCDEFGHIJKLMNOPQRSTUVZabcdefghijklmnopqrstuvxyzÁàáéíñóúü"
# Near misses for a name's edges or middle: every kind of whitespace Python's strip() removes
# (incl. U+001C..U+001F), controls, format characters, CSV syntax, formula prefixes, and code
# points unassigned in this Python's Unicode but assigned in newer ones (U+1F6DC).
TRICKY_GROUPS = [
    [chr(p) for p in range(sys.maxunicode + 1) if chr(p).isspace()],
    list(',"=+-@'),
    [*map(chr, range(0x20)), "\x7f", "\x85", "\u200b", "\u200e", "\ufeff"],
    BY_CATEGORY["Cf"],
    ["\ufffe", "\U0001f6dc", "\ue000", "\U0010fffd", *BY_CATEGORY["Cn"][:10], *BY_CATEGORY["Co"][:4]],
]

TEXT_CHARS = [c for category in TEXT_CATEGORIES for c in BY_CATEGORY[category] if c not in ',"']
TRICKY_MONTH_DAYS = [(2, 29), (2, 30), (4, 31), (0, 1), (13, 1), (1, 0), (1, 32)]
TRICKY_YEARS = [0, 1, 4, 99, 100, 400, 1582, 1600, 1700, 1899, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 9999]

# Bodies are built by a Random seeded from hypothesis: reproducible from the failing seed, and
# hundreds of times faster than drawing every character through hypothesis.


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _text_char(rng: random.Random) -> str:
    return rng.choice(DATASET_ALPHABET) if rng.random() < 0.75 else rng.choice(TEXT_CHARS)


def make_name(rng: random.Random, clean: bool) -> str:
    """A name in a real shape, its edges from any class of text; ``clean=False``: maybe a near miss."""
    first = rng.choice("ABCMSZÁ") if rng.random() < 0.5 else rng.choice([c for c in TEXT_CHARS if c not in "=+-@"])
    if rng.random() < 0.1:
        name = first  # one character
    else:
        size = rng.choice([0, 1, 3, 10, 10, 20, 28, 97, 98])
        last = rng.choice("aeinoz") if rng.random() < 0.5 else rng.choice(TEXT_CHARS)
        name = first + "".join(_text_char(rng) for _ in range(size)) + last
    if not clean:
        where, odd = rng.choice(["start", "end", "middle", "pad", "long"]), rng.choice(rng.choice(TRICKY_GROUPS))
        if where == "start":
            name = odd + name
        elif where == "end":
            name = name + odd
        elif where == "middle":
            cut = rng.randint(0, len(name))
            name = name[:cut] + odd + name[cut:]
        elif where == "pad":
            name = " " + name + " "
        else:
            name = name + "".join(rng.choice(TEXT_CHARS) for _ in range(101 - len(name)))
    return name


def make_birthdate(rng: random.Random, clean: bool, latest: date) -> str:
    if not clean:  # a near miss: each a date the general path refuses, or one right at an edge
        year = rng.choice(TRICKY_YEARS)
        return rng.choice(
            [
                (latest + timedelta(days=rng.randint(-1, 2))).isoformat(),
                f"{latest.year + rng.randint(0, 1):04d}-{latest.month:02d}-{latest.day:02d}",
                f"{year:04d}-02-29",
                f"{year:04d}-{rng.choice(TRICKY_MONTH_DAYS)[0]:02d}-{rng.choice(TRICKY_MONTH_DAYS)[1]:02d}",
                f"{year:04d}-{rng.randint(1, 9)}-{rng.randint(10, 28)}",
            ]
        )
    kind = rng.choice(["tricky", "tricky", "random", "near today"])
    if kind == "near today":
        return (latest - timedelta(days=rng.randint(0, 3))).isoformat()
    years = [*TRICKY_YEARS, latest.year - 1, latest.year]
    year = rng.choice(years) if kind == "tricky" else rng.randint(1, 9999)
    month, day = rng.randint(1, 12), rng.randint(1, 31)
    year = max(year, 1)
    if (year, month) > (latest.year, latest.month):
        year = latest.year - 1
    month_days = [31, 29 if _is_leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    day = min(day, month_days, latest.day if (year, month) == (latest.year, latest.month) else 31)
    return f"{year:04d}-{month:02d}-{day:02d}"


def make_row(rng: random.Random, clean: bool, latest: date) -> list[str]:
    document = str(rng.randrange(10 ** rng.randint(1, 10))).zfill(rng.choice([1, 1, 1, 8, 10]))
    number = str(rng.choice([0, 1, 7574, 9999, rng.randrange(10_000)]))
    if not clean:
        document = rng.choice([document, "", "12345678901", "١٢", "1 2"])
        number = rng.choice([number, "0042", "00", "10000", "-1", "", "٧", "7 "])
    names = [make_name(rng, clean), make_name(rng, clean)]
    return [*names, document, make_birthdate(rng, clean, latest), number]


def make_body(rng: random.Random) -> tuple[bytes, str]:
    """(body, kind): "plain" bodies should all take the fast path; "near miss" ones are one edit off."""
    latest = latest_birthdate()
    count = rng.choice([1, 2, 3, 5, 10, 25])
    lines = [make_row(rng, True, latest) for _ in range(count)]
    kind = rng.choice(["plain"] * 3 + ["near miss"])
    newline = rng.choice(["\n", "\r\n"])
    edit, at = (
        rng.choice(["row", "row", "row", "blank", "header", "bom", "quoted", "lone cr", "mixed"]),
        rng.randrange(count),
    )
    if kind == "near miss" and edit == "row":
        for _ in range(rng.choice([1, 1, 2, 3])):
            field = rng.choice([0, 1, 2, 3, 3, 3, 4])  # birthdates have the most edges
            lines[rng.randrange(count)][field] = make_row(rng, False, latest)[field]
    if kind == "near miss" and edit == "quoted":
        lines[at][0] = '"' + lines[at][0].replace('"', '""') + '"'
    text_lines = [",".join(line) for line in lines]
    if kind == "near miss":
        if edit == "blank":
            text_lines.insert(at, rng.choice(["", " ", "\t"]))
        elif edit == "header":
            text_lines.insert(at, "first_name,last_name,document,birthdate,number")
        elif edit == "lone cr":
            text_lines[at] += "\r"
        elif edit == "mixed":
            text_lines[at] += "\r\n" if newline == "\n" else "\n"
    text = newline.join(text_lines) + (newline if rng.random() < 0.5 else "")
    if kind == "near miss" and edit == "bom":
        text = "\ufeff" + text
    return text.encode(), kind


# -- the property -------------------------------------------------------------------------------


def test_fast_path_agrees_with_the_general_path_and_is_taken_in_most_examples() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.integers(0, 2**64), st.integers(1, 10_000), st.sampled_from([10_000, 10_000, 10_000, 3]))
    def run(seed: int, agency: int, max_bets: int) -> None:
        body, kind = make_body(random.Random(seed))
        taken = check_agreement(body, agency, max_bets)
        seen["examples"] += 1
        seen[f"{kind} examples"] += 1
        seen[f"{kind} fast"] += taken

    run()
    taken = seen["plain fast"] + seen["near miss fast"]
    print(f"fast path taken in {taken} of {seen['examples']} examples: {dict(seen)}")
    assert taken > MIN_FAST_SHARE * seen["examples"], dict(seen)
    assert seen["plain fast"] == seen["plain examples"], "a plain, valid body went down the general path"


def test_real_agency_file_takes_the_fast_path(dataset) -> None:
    body = (dataset / "agency-5.csv").read_bytes()
    assert check_agreement(body, 5, 100_000)
    assert parse_plain_csv(body, 5, 100_000).count == 991


# -- hand-picked cases: exact answers written out -------------------------------------------------


def test_stored_bytes_are_the_lines_with_the_agency_in_front() -> None:
    body = "Ana María,Gómez,0012,2000-02-29,0\r\nZoë,李,9999999999,1900-12-31,7574".encode()
    parsed = parse_plain_csv(body, 12, 10)
    assert parsed == ParsedChunk(
        "12,Ana María,Gómez,0012,2000-02-29,0\n12,Zoë,李,9999999999,1900-12-31,7574\n".encode(), 2
    )


@pytest.mark.parametrize(
    "body",
    [
        "Ana,Gómez,1,1990-01-01,5\n\nLuis,Pérez,2,1990-01-01,6\n",  # blank line
        "first_name,last_name,document,birthdate,number\nAna,Gómez,1,1990-01-01,5\n",  # header
        " Ana,Gómez,1,1990-01-01,5\n",  # to be trimmed
        "Ana\x1f,Gómez,1,1990-01-01,5\n",  # U+001F: str.strip() removes it
        "Ana,Gómez,1,1990-01-01,0042\n",  # leading zeros
        '"Ana, María",Gómez,1,1990-01-01,5\n',  # quoted comma
        "\ufeffAna,Gómez,1,1990-01-01,5\n",  # BOM
        "Ana,Gómez,1,1990-01-01,5\r",  # a lone CR ends the last line
        "李" * 100 + ",Gómez,1,1990-01-01,5\n",  # 100 characters in 300 bytes: exact length check
    ],
)
def test_valid_but_unusual_bodies(body: str) -> None:
    general = parse_csv_general(body.encode(), 1, 100)
    fast = parse_plain_csv(body.encode(), 1, 100)
    assert fast is None or fast == general
    assert general.count == 1 + body.count("Luis")


@pytest.mark.parametrize(
    "body",
    [
        "Ana,Gómez,1,1990-02-30,5\n",  # no such day
        "Ana,Gómez,1,2023-02-29,5\n",  # not a leap year
        "Ana,Gómez,1,1900-02-29,5\n",  # not a leap year either (divisible by 100)
        "Ana,Gómez,1,0000-01-01,5\n",  # there is no year 0
        "Ana,Gómez,1,2999-01-01,5\n",  # future
        "Ana,Gó\x00mez,1,1990-01-01,5\n",  # control character
        "Ana,Gó\u2028mez,1,1990-01-01,5\n",  # a line separator inside a name is not text
        "Ana\U0001f6dcx,Gómez,1,1990-01-01,5\n",  # assigned only in a newer Unicode than this Python's
        "=cmd,Gómez,1,1990-01-01,5\n",  # formula
        "A" * 101 + ",Gómez,1,1990-01-01,5\n",
        "李" * 101 + ",Gómez,1,1990-01-01,5\n",
    ],
)
def test_invalid_bodies_are_refused_by_both(body: str) -> None:
    assert parse_plain_csv(body.encode(), 1, 100) is None
    with pytest.raises(ingest.InvalidChunk):
        parse_csv_general(body.encode(), 1, 100)


def test_too_many_bets_from_both_paths() -> None:
    body = b"Ana,Lopez,1,2000-01-01,1\n" * 4
    for parse in (parse_plain_csv, parse_csv_general):
        with pytest.raises(ingest.TooManyBets):
            parse(body, 1, 3)


# -- the date pattern, against an independent calendar ------------------------------------------

MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def real_and_not_after(text: str, latest: date) -> bool:
    """Written from the calendar's rules, not from datetime: YYYY-MM-DD, year 1..9999."""
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:])
    if not (1 <= year and 1 <= month <= 12 and day >= 1):
        return False
    if day > MONTH_DAYS[month - 1] + (month == 2 and _is_leap(year)):
        return False
    return (year, month, day) <= (latest.year, latest.month, latest.day)


@pytest.mark.parametrize("latest", [date(2024, 2, 28), date(2024, 2, 29), date(2025, 1, 1), date(2100, 3, 1)])
def test_date_pattern_is_exactly_the_calendar(latest: date) -> None:
    pattern = re2.compile(csv_fast.dates_up_to(latest))
    years = [*TRICKY_YEARS, latest.year - 1, latest.year, latest.year + 1]
    texts = [f"{y:04d}-{m:02d}-{d:02d}" for y in years for m in range(14) for d in range(33)]  # every month-day
    if latest == date(2024, 2, 29):  # every year, on the days that differ between years
        texts += [f"{y:04d}-{md}" for y in range(10_000) for md in ("01-01", "02-28", "02-29", "12-31")]
    wrong = [t for t in texts if (pattern.fullmatch(t) is not None) != real_and_not_after(t, latest)]
    assert wrong == []


@pytest.mark.parametrize("latest", [date(2024, 2, 28), date(2024, 2, 29), date(2023, 12, 31), date(2024, 1, 1)])
def test_the_pattern_follows_the_day(monkeypatch, latest: date) -> None:
    monkeypatch.setattr(csv_fast, "latest_birthdate", lambda: latest)
    monkeypatch.setattr(ingest, "latest_birthdate", lambda: latest)
    for born, ok in [(latest, True), (latest - timedelta(days=1), True), (latest + timedelta(days=1), False)]:
        body = f"Ana,Lopez,1,{born.isoformat()},5\n".encode()
        assert (parse_plain_csv(body, 1, 10) is not None) == ok
        check_agreement(body)
        if not ok:
            with pytest.raises(ingest.InvalidChunk):
                parse_csv_general(body, 1, 10)


def test_today_at_utc_plus_14_is_accepted_and_the_day_after_is_not() -> None:
    kiribati = datetime.now(timezone(timedelta(hours=14))).date()  # the day can only move on from here
    for born, ok in [(kiribati, True), (kiribati + timedelta(days=2), False)]:
        body = f"Ana,Lopez,1,{born.isoformat()},5\n".encode()
        assert (parse_plain_csv(body, 1, 10) is not None) == ok


def test_name_classes_come_from_this_pythons_tables() -> None:
    """Every code point: the name class accepts exactly what the domain calls text."""
    first, middle, last = (re2.compile(c) for c in csv_fast._name_classes())
    assert re.fullmatch(r"\[.*\]", csv_fast._name_classes()[1], re.S)
    for point in [*range(0x3000), *range(0x1F000, 0x1FB00), 0xE0001, 0x10FFFD]:
        char = chr(point)
        text = char.isprintable() or unicodedata.category(char) == "Zs"
        in_middle = text and char not in ',"'
        assert (middle.fullmatch(char) is not None) == in_middle, hex(point)
        assert (last.fullmatch(char) is not None) == (in_middle and not char.isspace()), hex(point)
        assert (first.fullmatch(char) is not None) == (in_middle and not char.isspace() and char not in "=+-@")
