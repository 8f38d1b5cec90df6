"""Turning request bodies into rows (app/ingest.py): JSON and CSV, every way they go wrong."""

from __future__ import annotations

import csv
import io
import string
from datetime import date, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import latest_birthdate
from app.ingest import (
    MAX_REPORTED_PROBLEMS,
    BetProblem,
    InvalidChunk,
    MalformedBody,
    TooManyBets,
    UnsupportedMediaType,
    media_type,
    parse_chunk,
    parse_csv,
    parse_json,
)


def stored_csv(rows) -> bytes:
    """The stored form, written out here rather than taken from app.domain.encode_rows: fields
    joined by commas, one row a line (LF); a field holding , " CR or LF quoted, quotes doubled."""

    def field(value) -> str:
        text = str(value)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text

    return "".join(",".join(map(field, row)) + "\n" for row in rows).encode()


def rows_of(parsed):
    """The rows of a parsed chunk, checking that its payload is exactly their stored form."""
    rows = parsed.rows
    assert parsed.count == len(rows)
    assert parsed.payload == stored_csv(rows)
    return rows


def csv_rows(body: bytes, agency: int = 3, max_bets: int = 1000):
    return rows_of(parse_csv(body, agency, max_bets))


def json_rows(body: bytes, agency: int = 3, max_bets: int = 1000):
    return rows_of(parse_json(body, agency, max_bets))


ROW1 = ("Santiago Lionel", "Lorca", "30904465", "1999-03-17", 2201)
ROW2 = ("Agustin Emanuel", "Zambrano", "21689196", "2000-05-10", 9325)
CSV2 = b"Santiago Lionel,Lorca,30904465,1999-03-17,2201\nAgustin Emanuel,Zambrano,21689196,2000-05-10,9325\n"
EXPECTED2 = [(3, *ROW1), (3, *ROW2)]


def bet_json(row=ROW1, **changes) -> dict:
    first_name, last_name, document, birthdate, number = row
    out = {
        "first_name": first_name,
        "last_name": last_name,
        "document": document,
        "birthdate": birthdate,
        "number": number,
    }
    out.update(changes)
    return out


def json_body(*bets, **top) -> bytes:
    return orjson.dumps({"bets": list(bets), **top})


def invalid_json(body: bytes, agency: int = 3, max_bets: int = 1000) -> InvalidChunk:
    with pytest.raises(InvalidChunk) as caught:
        parse_json(body, agency, max_bets)
    return caught.value


def invalid_csv(body: bytes, agency: int = 3, max_bets: int = 1000) -> InvalidChunk:
    with pytest.raises(InvalidChunk) as caught:
        parse_csv(body, agency, max_bets)
    return caught.value


# -- CSV -----------------------------------------------------------------------------------


def test_csv_happy_path():
    assert csv_rows(CSV2, 3, 1000) == EXPECTED2
    assert parse_csv(CSV2, 3, 1000).payload == (
        b"3,Santiago Lionel,Lorca,30904465,1999-03-17,2201\n3,Agustin Emanuel,Zambrano,21689196,2000-05-10,9325\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        CSV2,
        CSV2.replace(b"\n", b"\r\n"),
        CSV2.rstrip(b"\n"),  # no final newline
        b"\xef\xbb\xbf" + CSV2,  # UTF-8 BOM
        b"\xef\xbb\xbf" + CSV2.replace(b"\n", b"\r\n"),
        b"first_name,last_name,document,birthdate,number\n" + CSV2,
        b"\xef\xbb\xbfFirst_Name, last_name ,DOCUMENT,birthdate,number\r\n" + CSV2.replace(b"\n", b"\r\n"),
        b"\n\n" + CSV2.replace(b"\n", b"\n\n") + b"\n\r\n",  # blank lines anywhere
        b"\n" + b"first_name,last_name,document,birthdate,number\n\n" + CSV2,
    ],
)
def test_csv_variants_give_the_same_rows(body):
    assert csv_rows(body, 3, 1000) == EXPECTED2


def test_csv_header_only_once_at_the_start():
    header = b"first_name,last_name,document,birthdate,number\n"
    error = invalid_csv(CSV2 + header)
    assert [p.as_dict() for p in error.problems] == [
        {"index": 2, "line": 3, "field": "document", "message": 'must be a string of 1 to 10 digits, e.g. "30904465"'},
        {"index": 2, "line": 3, "field": "birthdate", "message": "must be a date as YYYY-MM-DD"},
        {"index": 2, "line": 3, "field": "number", "message": "must be an integer from 0 to 9999"},
    ]


def test_csv_quoted_fields():
    body = '"Pérez, Ana","O\'Brien ""Jr""",0001,2000-02-29,"0007"\n'.encode()
    assert csv_rows(body, 1, 10) == [(1, "Pérez, Ana", 'O\'Brien "Jr"', "0001", "2000-02-29", 7)]


def test_csv_names_are_trimmed_and_number_parsed():
    assert csv_rows(b"  Ana  ,\tLopez ,12,2000-01-01,0\n", 1, 10) == [(1, "Ana", "Lopez", "12", "2000-01-01", 0)]


def test_csv_wrong_field_count_reports_line():
    body = CSV2 + b"only,three,fields\n" + CSV2 + b"a,b,1,2000-01-01,1,extra\n"
    error = invalid_csv(body)
    assert [p.as_dict() for p in error.problems] == [
        {
            "index": 2,
            "line": 3,
            "field": "bet",
            "message": "has 3 fields, expected 5: first_name,last_name,document,birthdate,number",
        },
        {
            "index": 5,
            "line": 6,
            "field": "bet",
            "message": "has 6 fields, expected 5: first_name,last_name,document,birthdate,number",
        },
    ]
    assert (error.total, error.bets) == (2, 6)


def test_csv_line_numbers_count_header_blank_lines_and_crlf():
    body = (
        b"first_name,last_name,document,birthdate,number\r\n"  # line 1
        b"\r\n"  # line 2
        b"Ana,Lopez,1,2000-01-01,1\r\n"  # line 3, index 0
        b"Ana,Lopez,x,2000-01-01,1\r\n"  # line 4, index 1
        b"\r\n"  # line 5
        b'"Ana",Lopez,1,2000-13-01,10000\r\n'
    )  # line 6, index 2
    error = invalid_csv(body)
    assert [(p.index, p.line, p.field) for p in error.problems] == [
        (1, 4, "document"),
        (2, 6, "birthdate"),
        (2, 6, "number"),
    ]
    assert (error.total, error.bets) == (3, 3)
    assert str(error) == "3 invalid bet field(s) in a chunk of 3"


def test_csv_several_bad_bets_each_named():
    body = (
        b"Ana,Lopez,1,2000-01-01,1\n,Lopez,1,2000-01-01,1\nAna,Lopez,1,2000-01-01,1\nAna,,12345678901,2000-01-01,-1\n"
    )
    error = invalid_csv(body)
    assert [(p.index, p.line, p.field) for p in error.problems] == [
        (1, 2, "first_name"),
        (3, 4, "last_name"),
        (3, 4, "document"),
        (3, 4, "number"),
    ]


@pytest.mark.parametrize("number", [b"-1", b"10000", b"1.5", b"+7", b" 7", b"", b"7e0", "٧".encode(), b"00000"])
def test_csv_bad_number_text(number):
    error = invalid_csv(b"Ana,Lopez,1,2000-01-01," + number + b"\n")
    assert [(p.index, p.line, p.field) for p in error.problems] == [(0, 1, "number")]


def test_csv_problem_cap_keeps_counting():
    body = b"".join(b"Ana,Lopez,x,bad,99999\n" for _ in range(50))  # 3 problems per bet, 150 in all
    error = invalid_csv(body)
    assert MAX_REPORTED_PROBLEMS == 100
    assert len(error.problems) == 100
    assert error.total == 150
    assert error.bets == 50
    assert error.problems[-1] == BetProblem(33, "document", 'must be a string of 1 to 10 digits, e.g. "30904465"', 34)


def test_csv_not_utf8_names_the_line():
    body = b"Ana,Lopez,1,2000-01-01,1\nAna,Lopez,1,2000-01-01,1\nJos\xe9,Lopez,1,2000-01-01,1\n"
    with pytest.raises(MalformedBody) as caught:
        parse_csv(body, 1, 10)
    assert "line 3" in str(caught.value)
    assert "UTF-8" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        b'Ana,"Lopez,1,2000-01-01,1\n',
        b'Ana,Lopez,1,2000-01-01,1\n"Ana,Lopez,1,2000-01-01,1\nBea,Lopez,1,2000-01-01,1\n',
    ],
)
def test_csv_unterminated_quote_is_malformed(body):
    with pytest.raises(MalformedBody) as caught:
        parse_csv(body, 1, 10)
    assert "malformed CSV" in str(caught.value)


def test_csv_stray_quote_is_malformed_and_names_line():
    with pytest.raises(MalformedBody) as caught:
        parse_csv(b'Ana,Lopez,1,2000-01-01,1\nAna,"Lo"pez,1,2000-01-01,1\n', 1, 10)
    assert "line 2" in str(caught.value)


@pytest.mark.parametrize(
    "body", [b"", b"\n", b"\r\n\r\n", b"\xef\xbb\xbf", b"first_name,last_name,document,birthdate,number\n"]
)
def test_csv_empty_chunk(body):
    error = invalid_csv(body)
    assert (error.problems, error.total, error.bets) == ([], 0, 0)
    assert str(error) == "the chunk has no bets"


def test_csv_too_many_bets():
    body = b"Ana,Lopez,1,2000-01-01,1\n" * 11
    assert parse_csv(body[: 25 * 10], 1, 10).count == 10
    with pytest.raises(TooManyBets) as caught:
        parse_csv(body, 1, 10)
    assert caught.value.limit == 10
    # blank lines and the header do not count as bets
    assert parse_csv(b"first_name,last_name,document,birthdate,number\n\n" + body[:250] + b"\n\n", 1, 10).count == 10


def test_csv_unicode_line_separators_are_not_line_breaks():
    error = invalid_csv("Ana\u2028Bea,Lopez,1,2000-01-01,1\nAna,Lo\u2029pez,1,2000-01-01,1\n".encode())
    assert [(p.index, p.line, p.field) for p in error.problems] == [(0, 1, "first_name"), (1, 2, "last_name")]


def test_csv_trailing_unicode_separator_is_trimmed():
    # str.strip() removes U+2028 at the end of a field, which is then kept without it.
    assert csv_rows("Ana\u2028,Lopez,1,2000-01-01,1\n".encode(), 1, 10) == [(1, "Ana", "Lopez", "1", "2000-01-01", 1)]


def test_csv_nul_byte_is_a_bad_name_not_a_crash():
    error = invalid_csv(b"A\x00na,Lopez,1,2000-01-01,1\n")
    assert [(p.index, p.line, p.field) for p in error.problems] == [(0, 1, "first_name")]


# Plain bodies (the shape of the real agency files) may take a faster route; the answers
# must be the same as for any other body.


def test_plain_csv_future_birthdate_rejected():
    future = (latest_birthdate() + timedelta(days=1)).isoformat().encode()
    error = invalid_csv(CSV2 + b"Ana,Lopez,1," + future + b",1\n")
    assert [(p.index, p.line, p.field, p.message) for p in error.problems] == [
        (2, 3, "birthdate", "must not be in the future")
    ]


@pytest.mark.parametrize(
    "line, field",
    [
        (b"Ana,Lopez,1,2020-02-30,1", "birthdate"),
        (b"Ana,Lopez,1,2021-13-01,1", "birthdate"),
        (b"=HYPERLINK(x),Lopez,1,2000-01-01,1", "first_name"),
        (b"Ana,@SUM(A1),1,2000-01-01,1", "last_name"),
        (b"+Ana,Lopez,1,2000-01-01,1", "first_name"),
        (b"-Ana,Lopez,1,2000-01-01,1", "first_name"),
        (b"A" * 101 + b",Lopez,1,2000-01-01,1", "first_name"),
        (b"Ana,Lo\tpez,1,2000-01-01,1", "last_name"),
        (b"Ana,Lopez,12345678901,2000-01-01,1", "document"),
        (b"Ana,Lopez,1,2000-01-01,10000", "number"),
    ],
)
def test_plain_csv_bad_field(line, field):
    error = invalid_csv(CSV2 + line + b"\n" + CSV2)
    assert [(p.index, p.line, p.field) for p in error.problems] == [(2, 3, field)]


@pytest.mark.parametrize(
    "line, row",
    [
        (b"Ana,2099-01-01,1,2000-01-01,5", ("Ana", "2099-01-01", "1", "2000-01-01", 5)),  # a date-shaped name
        (b"Ana,2020-02-30,1,2000-01-01,5", ("Ana", "2020-02-30", "1", "2000-01-01", 5)),
        (b"Ana,Lopez,1,2000-01-01,0007", ("Ana", "Lopez", "1", "2000-01-01", 7)),
        (b"Ana-Mar\xc3\xada,O'Brien,007,2000-01-01,0", ("Ana-María", "O'Brien", "007", "2000-01-01", 0)),
        (b"Ana\xc2\xa0Mar\xc3\xada,Lopez,1,2000-01-01,9999", ("Ana\u00a0María", "Lopez", "1", "2000-01-01", 9999)),
        (b"A" * 100 + b",Lopez,1,2000-01-01,1", ("A" * 100, "Lopez", "1", "2000-01-01", 1)),
    ],
)
def test_plain_csv_edge_rows_accepted(line, row):
    assert csv_rows(CSV2 + line + b"\n", 3, 10) == [*EXPECTED2, (3, *row)]
    assert csv_rows(line, 3, 10) == [(3, *row)]


def test_plain_csv_too_many_bets():
    with pytest.raises(TooManyBets):
        parse_csv(CSV2 * 6, 1, 11)
    assert parse_csv(CSV2 * 6, 1, 12).count == 12


# -- JSON ----------------------------------------------------------------------------------


def test_json_happy_path():
    assert json_rows(json_body(bet_json(ROW1), bet_json(ROW2)), 3, 1000) == EXPECTED2


def test_json_keeps_text_exactly():
    body = json_body(bet_json(('  Pérez, "Ana"  ', "O'Brien\u00a0Jr", "0001", "2000-02-29", 0)))
    assert json_rows(body, 1, 10) == [(1, 'Pérez, "Ana"', "O'Brien\u00a0Jr", "0001", "2000-02-29", 0)]


def test_json_whitespace_and_bom_free_pretty_body():
    body = b'{\r\n  "bets": [\r\n    ' + orjson.dumps(bet_json()) + b"\r\n  ]\r\n}\r\n"
    assert json_rows(body, 3, 10) == [EXPECTED2[0]]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b'{"bets": [}',
        b"{'bets': []}",
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'{"bets": [1e999]}',
    ],
)
def test_json_malformed(body):
    with pytest.raises(MalformedBody) as caught:
        parse_json(body, 1, 10)
    assert str(caught.value).startswith("body is not valid JSON")


@pytest.mark.parametrize(
    "body, detail",
    [
        (b"[]", 'body must be a JSON object {"bets": [...]}'),
        (b"null", 'body must be a JSON object {"bets": [...]}'),
        (b'"bets"', 'body must be a JSON object {"bets": [...]}'),
        (b"{}", 'body must be a JSON object {"bets": [...]}'),
        (b'{"bets": null}', 'body must be a JSON object {"bets": [...]}'),
        (b'{"bets": {}}', 'body must be a JSON object {"bets": [...]}'),
        (b'{"Bets": []}', 'body must be a JSON object {"bets": [...]}'),
        (b'{"bets": [], "agency": 1}', "unknown top-level field(s): agency"),
        (b'{"bets": [], "z": 1, "a": 2}', "unknown top-level field(s): a, z"),
        (b'{"bets": []}', "the chunk has no bets"),
    ],
)
def test_json_wrong_shape(body, detail):
    error = invalid_json(body)
    assert str(error) == detail
    assert error.problems == []


def test_json_bet_problems():
    bets = [
        bet_json(),  # 0 ok
        [1, 2],  # 1 not an object
        {k: v for k, v in bet_json().items() if k != "document"},  # 2 missing field
        {**bet_json(), "nickname": "x"},  # 3 unknown field
        {**bet_json(), "agency": 3},  # 4 agency equal to the URL: fine
        {**bet_json(), "agency": 2},  # 5 agency differs
        bet_json(number="7"),  # 6 string number
        None,  # 7 not an object
        {},  # 8 every field missing
        bet_json(first_name="", birthdate="2020-02-30"),  # 9 two invalid fields
    ]
    error = invalid_json(json_body(*bets))
    assert [(p.index, p.field) for p in error.problems] == [
        (1, "bet"),
        (2, "document"),
        (3, "nickname"),
        (5, "agency"),
        (6, "number"),
        (7, "bet"),
        (8, "first_name"),
        (8, "last_name"),
        (8, "document"),
        (8, "birthdate"),
        (8, "number"),
        (9, "first_name"),
        (9, "birthdate"),
    ]
    by_index = {(p.index, p.field): p.message for p in error.problems}
    assert by_index[(2, "document")] == "is required"
    assert by_index[(3, "nickname")] == "is not a bet field"
    assert by_index[(5, "agency")] == "does not match the agency in the URL"
    assert by_index[(1, "bet")] == "must be a JSON object"
    assert all(p.line is None and "line" not in p.as_dict() for p in error.problems)
    assert (error.total, error.bets) == (13, 10)


def test_json_agency_field_equal_to_url_is_accepted():
    assert json_rows(json_body({**bet_json(ROW1), "agency": 3}, bet_json(ROW2)), 3, 10) == EXPECTED2


@pytest.mark.parametrize("agency_value", ["3", [3], None, 4])
def test_json_agency_field_not_the_url_agency(agency_value):
    error = invalid_json(json_body({**bet_json(), "agency": agency_value}))
    assert [(p.index, p.field, p.message) for p in error.problems] == [
        (0, "agency", "does not match the agency in the URL")
    ]


def test_json_agency_field_true_is_not_agency_1():
    # JSON true is not the number 1 (the same rule rejects "number": true), but Python's
    # True == 1 makes the agency comparison accept it.
    error = invalid_json(json_body({**bet_json(), "agency": True}), agency=1)
    assert [(p.index, p.field) for p in error.problems] == [(0, "agency")]


def test_json_agency_field_with_missing_field():
    bet = {**bet_json(), "agency": 3}
    del bet["number"]
    error = invalid_json(json_body(bet))
    assert [(p.index, p.field, p.message) for p in error.problems] == [(0, "number", "is required")]


def test_json_problem_cap_keeps_counting():
    error = invalid_json(json_body(*[bet_json(document="x", number=-5)] * 70))
    assert len(error.problems) == 100
    assert error.total == 140
    assert error.bets == 70


def test_json_too_many_bets():
    assert parse_json(json_body(*[bet_json()] * 10), 1, 10).count == 10
    with pytest.raises(TooManyBets) as caught:
        parse_json(json_body(*[bet_json()] * 11), 1, 10)
    assert caught.value.limit == 10
    # counted before any validation: 11 broken bets are still "too many"
    with pytest.raises(TooManyBets):
        parse_json(json_body(*[None] * 11), 1, 10)


@pytest.mark.parametrize(
    "number",
    [
        "true",
        "1.5",
        "7.0",
        '"7"',
        "null",
        "-1",
        "10000",
        "18446744073709551616",
        "1" + "0" * 30,
        "-0.0",
        "7e0",
        "[7]",
        "{}",
    ],
)
def test_json_number_types(number):
    body = (
        b'{"bets": [{"first_name": "a", "last_name": "b", "document": "1", "birthdate": "2000-01-01", '
        b'"number": ' + number.encode() + b"}]}"
    )
    error = invalid_json(body)
    assert [(p.index, p.field) for p in error.problems] == [(0, "number")]


def test_json_lone_surrogate_is_malformed():
    with pytest.raises(MalformedBody):
        parse_json(
            b'{"bets": [{"first_name": "\\ud800", "last_name": "a", "document": "1", '
            b'"birthdate": "2000-01-01", "number": 1}]}',
            1,
            10,
        )


# -- parse_chunk and media types -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON ; charset=UTF-8",
        "application/vnd.lottery+json",
    ],
)
def test_parse_chunk_json(content_type):
    assert rows_of(parse_chunk(json_body(bet_json(ROW1), bet_json(ROW2)), content_type, 3, 100)) == EXPECTED2


@pytest.mark.parametrize("content_type", ["text/csv", "text/csv; charset=utf-8", "TEXT/CSV", "application/csv"])
def test_parse_chunk_csv(content_type):
    assert rows_of(parse_chunk(CSV2, content_type, 3, 100)) == EXPECTED2


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        None,
        "multipart/form-data; boundary=x",
        "text/csvx",
        "application/jsonl",
    ],
)
def test_parse_chunk_unsupported(content_type):
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_chunk(CSV2, content_type, 3, 100)
    if not content_type:
        assert "(none)" in str(caught.value)


def test_media_type():
    assert media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert media_type(None) == ""


def test_parse_chunk_too_many_both_formats():
    with pytest.raises(TooManyBets):
        parse_chunk(CSV2, "text/csv", 3, 1)
    with pytest.raises(TooManyBets):
        parse_chunk(json_body(bet_json(ROW1), bet_json(ROW2)), "application/json", 3, 1)


# -- property: CSV and JSON agree ----------------------------------------------------------

# Printable text: no control/format/surrogate/private/unassigned characters and no line or
# paragraph separators; spaces (Zs) are allowed inside a name.
NAME_CHARS = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
FORMULA_PREFIXES = ("=", "+", "-", "@")  # refused as the first character of a name (spreadsheet formulas)
NAMES = (
    st.one_of(
        st.text(NAME_CHARS, min_size=1, max_size=100),
        st.text(st.sampled_from(",\"' 7574-" + string.ascii_letters), min_size=1, max_size=20),
        st.from_regex(r"[A-Za-z][A-Za-z ]{0,30}[a-z]", fullmatch=True),  # the shape of real agency files
    )
    .map(str.strip)
    .filter(lambda s: 0 < len(s) <= 100 and not s.startswith(FORMULA_PREFIXES))
)
DOCUMENTS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=10)
DATES = st.dates(min_value=date(1, 1, 1), max_value=latest_birthdate() - timedelta(days=1)).map(date.isoformat)
BETS = st.tuples(NAMES, NAMES, DOCUMENTS, DATES, st.integers(0, 9999))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bets=st.lists(BETS, min_size=1, max_size=20),
    agency=st.integers(1, 10_000),
    crlf=st.booleans(),
    header=st.booleans(),
    bom=st.booleans(),
)
def test_csv_and_json_agree(bets, agency, crlf, header, bom):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    if header:
        writer.writerow(["first_name", "last_name", "document", "birthdate", "number"])
    writer.writerows(bets)
    csv_body = ("\ufeff" if bom else "") + buffer.getvalue()
    json_payload = orjson.dumps(
        {
            "bets": [
                dict(zip(("first_name", "last_name", "document", "birthdate", "number"), bet, strict=True))
                for bet in bets
            ]
        }
    )
    expected = [(agency, *bet) for bet in bets]
    from_csv = parse_csv(csv_body.encode("utf-8"), agency, 20)
    from_json = parse_json(json_payload, agency, 20)
    assert rows_of(from_csv) == expected
    assert rows_of(from_json) == expected
    # byte-identical payloads: the same bets as CSV or JSON have one fingerprint (idempotency)
    assert from_csv.payload == from_json.payload == stored_csv(expected)
    assert from_csv.count == from_json.count == len(bets)


# -- ambiguous input is refused (issue 9, item 7) -------------------------------------------

BET_FIELDS_TEXT = b'"first_name": "Ana", "last_name": "Lopez", "document": "1", "birthdate": "2000-01-01"'


@pytest.mark.parametrize(
    "bet, key",
    [
        (b'{"number": 1, ' + BET_FIELDS_TEXT + b', "number": 7574}', "number"),
        (b'{"number": 7574, ' + BET_FIELDS_TEXT + b', "number": 7574}', "number"),  # even with the same value
        (b'{"first_name": "Bea", ' + BET_FIELDS_TEXT + b', "number": 1}', "first_name"),
        (b'{"x": 1, "x": 2, ' + BET_FIELDS_TEXT + b', "number": 1}', "x"),
        (b'{"doc\\u0075ment": "2", ' + BET_FIELDS_TEXT + b', "number": 1}', "document"),  # escaped, same key
    ],
)
def test_json_duplicate_key_in_a_bet_is_refused_and_named(bet, key):
    ok = orjson.dumps(bet_json())
    error = invalid_json(b'{"bets": [' + ok + b", " + bet + b"]}")
    assert [(p.index, p.field, p.message) for p in error.problems] == [(1, key, "is given more than once")]


@pytest.mark.parametrize(
    "body, key",
    [
        (b'{"bets": [], "bets": [' + orjson.dumps(bet_json()) + b"]}", "bets"),
        (b'{"bets": [' + orjson.dumps(bet_json()) + b'], "bets": []}', "bets"),
    ],
)
def test_json_duplicate_top_level_key_is_refused_and_named(body, key):
    error = invalid_json(body)
    assert str(error) == f'the top-level key "{key}" is given more than once'


def test_json_colons_inside_strings_do_not_look_like_duplicates():
    row = ("Ana: la", "Lopez:", "1", "2000-01-01", 5)
    body = orjson.dumps({"bets": [bet_json(row), bet_json(row)]})
    assert json_rows(body) == [(3, *row), (3, *row)]
    escaped = body.replace(b"Ana: la", b"Ana\\u003a la")  # one colon fewer in the raw text than in the strings
    assert json_rows(escaped) == [(3, *row), (3, *row)]


def test_json_escaped_colon_does_not_hide_a_duplicate():
    # one escaped colon in a string and one duplicate key: the raw text has as many colons as
    # the parsed document, so counting colons alone would miss the duplicate
    bet = b'{"first_name": "Ana\\u003a", "last_name": "L", "document": "1", "birthdate": "2000-01-01", '
    error = invalid_json(b'{"bets": [' + bet + b'"number": 1, "number": 2}]}')
    assert [(p.index, p.field) for p in error.problems] == [(0, "number")]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinity_are_malformed(constant):
    with pytest.raises(MalformedBody):
        parse_json(b'{"bets": [{"number": ' + constant + b"}]}", 1, 10)


def test_json_deeply_nested_duplicate_is_still_found():
    nested = b'{"a": 1, "a": 2}'
    for _ in range(300):  # deeper than orjson.dumps goes
        nested = b"[" + nested + b"]"
    bet = b'{"first_name": ' + nested + b', "last_name": "L", "document": "1", "birthdate": "2000-01-01", "number": 1}'
    error = invalid_json(b'{"bets": [' + bet + b"]}")
    assert [(p.index, p.field) for p in error.problems] == [(0, "first_name")]


@pytest.mark.parametrize("depth", [10, 900, 1024])
def test_json_nested_body_that_takes_the_exact_parse_never_crashes(depth):
    # "\\u0030" sends the body through the exact (stdlib) parse, whose nesting limit is lower
    nested = b"[" * depth + b'"\\u0030"' + b"]" * depth
    with pytest.raises((InvalidChunk, MalformedBody)):
        parse_json(b'{"bets": [' + nested + b"]}", 1, 10)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/csv; charset=latin-1",
        "text/csv; charset=ISO-8859-1",
        'text/csv; charset="latin-1"',
        "text/csv;charset=utf-16",
        "application/csv; charset=windows-1252",
        "application/json; charset=utf-16",
        "application/json; charset=UTF-32",
        "application/vnd.lottery+json; charset=latin1",
        "text/csv; charset=utf-8; charset=latin-1",
        "text/csv; charset=",
        "text/csv; charset=utf8",
    ],
)
def test_charset_other_than_utf8_is_415_naming_utf8(content_type):
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_chunk(CSV2 if "csv" in content_type else json_body(bet_json()), content_type, 3, 100)
    assert "utf-8" in str(caught.value)
    assert "charset" in str(caught.value)


@pytest.mark.parametrize(
    "content_type",
    ["text/csv; charset=utf-8", "text/csv; charset=UTF-8", 'text/csv; charset="utf-8"', "text/csv;CHARSET=Utf-8"],
)
def test_charset_utf8_accepted_however_written(content_type):
    assert rows_of(parse_chunk(CSV2, content_type, 3, 100)) == EXPECTED2


# -- only_bets: a chunk of an upload holds only bet lines (CONTRACT-uploads.md) ------------------

HEADER_LINE = b"first_name,last_name,document,birthdate,number"


@pytest.mark.parametrize(
    "body, line, why, skipped_today",
    [
        (HEADER_LINE + b"\n" + CSV2, 1, "a header line", True),
        (CSV2 + HEADER_LINE + b"\n", 3, "a header line", False),  # today: an invalid bet (422 either way)
        (CSV2 + b" First_Name , LAST_NAME,document,birthdate,number\r\n" + CSV2, 3, "a header line", False),
        (b"\n" + CSV2, 1, "a blank line", True),
        (CSV2 + b"\n", 3, "a blank line", True),
        (CSV2.replace(b"\n", b"\r\n") + b"\r\n", 3, "a blank line", True),
        (CSV2 + b"   \n" + CSV2, 3, "a blank line", False),  # only whitespace: blank for the uploader
        (CSV2 + b"\r" + CSV2, 3, "a blank line", True),  # a lone "\r"
        (CSV2[:47] + b"\n" + CSV2[47:], 2, "a blank line", True),  # between two bets
        (b"\xef\xbb\xbf\n" + CSV2, 1, "a blank line", True),  # a BOM then nothing
    ],
)
def test_only_bets_refuses_any_line_that_is_not_a_bet(body, line, why, skipped_today):
    with pytest.raises(InvalidChunk) as caught:
        parse_chunk(body, "text/csv", 3, 100, only_bets=True)
    error = caught.value
    assert str(error).startswith(f"line {line} is {why}"), str(error)
    assert [(p.line, p.field, p.message) for p in error.problems] == [(line, "bet", str(error))]
    if skipped_today:  # without only_bets the same body is accepted and the line skipped, as before
        assert rows_of(parse_chunk(body, "text/csv", 3, 100)) == EXPECTED2 * body.count(b"Santiago")


@pytest.mark.parametrize(
    "body", [CSV2, CSV2.replace(b"\n", b"\r\n"), CSV2.rstrip(b"\n"), b'"Santiago Lionel",' + CSV2[16:]]
)
def test_only_bets_accepts_bet_lines(body):
    assert rows_of(parse_chunk(body, "text/csv", 3, 100, only_bets=True)) == EXPECTED2


def test_only_bets_reports_the_first_skipped_line_even_with_bad_bets():
    body = b"Ana,Lopez,x,2000-01-01,1\n\n" + CSV2
    with pytest.raises(InvalidChunk) as caught:
        parse_chunk(body, "text/csv", 3, 100, only_bets=True)
    assert "line 2" in str(caught.value)


def test_only_bets_leaves_json_alone():
    assert rows_of(
        parse_chunk(json_body(bet_json(ROW1), bet_json(ROW2)), "application/json", 3, 100, only_bets=True)
    ) == (EXPECTED2)
