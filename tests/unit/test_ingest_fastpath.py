"""The CSV fast path must agree with the general path on every body it accepts."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import ingest
from app.ingest import ParsedChunk, _parse_plain_csv, parse_csv


def general_path(body: bytes, agency: int = 3) -> ParsedChunk | Exception:
    original = ingest._parse_plain_csv
    ingest._parse_plain_csv = lambda *args: None
    try:
        return parse_csv(body, agency, 10_000)
    except ingest.IngestError as error:
        return error
    finally:
        ingest._parse_plain_csv = original


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=105)
dates = st.one_of(
    st.dates(date(1900, 1, 1), date.today() + timedelta(days=3)).map(date.isoformat),
    st.sampled_from(["2001-02-29", "2000-02-29", "1999-13-01", "1999-1-01", "20000101"]),
)
bets = st.tuples(
    names,
    names,
    st.from_regex(r"[0-9]{0,11}", fullmatch=True),
    dates,
    st.one_of(st.integers(0, 10_050).map(str), st.sampled_from(["0042", "00", "-1", "7574"])),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bets, min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_fast_path_accepts_only_what_the_general_path_accepts_identically(rows, newline, trailing) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    text = out.getvalue() if trailing else out.getvalue()[: -len(newline)]
    fast = _parse_plain_csv(text, 3, 10_000)
    if fast is not None:
        assert general_path(text.encode()) == fast


def test_real_agency_file_takes_the_fast_path(dataset) -> None:
    body = (dataset / "agency-5.csv").read_bytes()
    fast = _parse_plain_csv(body.decode(), 5, 100_000)
    assert fast is not None and fast.count == 991
    assert general_path(body, 5) == fast


@pytest.mark.parametrize(
    "body",
    [
        "Ana,Gómez,1,1990-01-01,5\n\nLuis,Pérez,2,1990-01-01,6\n",  # blank line
        "first_name,last_name,document,birthdate,number\nAna,Gómez,1,1990-01-01,5\n",  # header
        " Ana,Gómez,1,1990-01-01,5\n",  # to be trimmed
        "Ana,Gómez,1,1990-01-01,0042\n",  # leading zeros
        "Ana\u00a0María,Gómez,1,1990-01-01,5\n",  # no-break space
        '"Ana, María",Gómez,1,1990-01-01,5\n',  # quoted comma
    ],
)
def test_valid_but_unusual_bodies_take_the_general_path_and_are_accepted(body: str) -> None:
    assert _parse_plain_csv(body, 1, 100) is None
    assert isinstance(parse_csv(body.encode(), 1, 100), ParsedChunk)


@pytest.mark.parametrize(
    "body",
    [
        "Ana,Gómez,1,1990-02-30,5\n",  # no such day
        "Ana,Gómez,1,2999-01-01,5\n",  # future
        "Ana,Gó\x00mez,1,1990-01-01,5\n",  # control character
        "=cmd,Gómez,1,1990-01-01,5\n",  # formula
        "A" * 101 + ",Gómez,1,1990-01-01,5\n",
    ],
)
def test_invalid_bodies_are_rejected_by_the_general_path(body: str) -> None:
    assert _parse_plain_csv(body, 1, 100) is None
    with pytest.raises(ingest.InvalidChunk):
        parse_csv(body.encode(), 1, 100)
