"""The bet rules (app/domain.py): validate_bet, has_won and the bets.csv helpers."""

from __future__ import annotations

import inspect
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app.domain import (
    MAX_NAME_LENGTH,
    WINNING_NUMBER,
    Bet,
    InvalidBet,
    bet_to_row,
    encode_rows,
    has_won,
    latest_birthdate,
    load_bets,
    store_bets,
    validate_bet,
)
from app.routes.schemas import BetIn

LATEST = date(2024, 6, 15)  # a fixed "latest birthdate" keeps most cases independent of the clock
GOOD = {"first_name": "Ana", "last_name": "Pérez", "document": "30904465", "birthdate": "1999-03-17", "number": 7574}


def check(latest: date = LATEST, **changes: object):
    bet = {**GOOD, **changes}
    return validate_bet(
        1, bet["first_name"], bet["last_name"], bet["document"], bet["birthdate"], bet["number"], latest
    )


def problems_of(**changes: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidBet) as caught:
        check(**changes)
    return caught.value.problems


def fields_of(**changes: object) -> list[str]:
    return [field for field, _ in problems_of(**changes)]


# -- a valid bet ---------------------------------------------------------------------------


def test_valid_bet_becomes_a_row():
    assert check() == (1, "Ana", "Pérez", "30904465", "1999-03-17", 7574)


def test_agency_is_passed_through():
    assert validate_bet(7, "a", "b", "1", "2000-01-01", 0, LATEST)[0] == 7


# -- names ---------------------------------------------------------------------------------


def test_names_are_trimmed():
    assert check(first_name="  Ana María \t", last_name="\u00a0Gómez  ")[1:3] == ("Ana María", "Gómez")


@pytest.mark.parametrize("value", ["", " ", "   \t "])
@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_empty_or_blank_name_rejected(field, value):
    assert fields_of(**{field: value}) == [field]


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_name_length_limit(field):
    assert MAX_NAME_LENGTH == 100
    ok = "x" * 100
    row = check(**{field: ok})
    assert ok in row
    # the limit applies after trimming
    assert ok in check(**{field: f"  {ok}  "})
    problems = problems_of(**{field: "x" * 101})
    assert [f for f, _ in problems] == [field]
    assert "at most 100" in problems[0][1]


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize(
    "name",
    [
        "O'Brien",
        'Juan "Chino"',
        "Pérez, Ana",
        "Ñandú Güemes",
        "Zoë ßøå",
        "李小龍",
        'D\'Alessandro, "el" Tano',
        "Ana\u00a0María",  # a no-break space inside a name is text
        "Name 7574",
        ",7574",
    ],
)
def test_names_with_punctuation_and_accents_kept_exactly(field, name):
    row = check(**{field: name})
    assert row[1 if field == "first_name" else 2] == name


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize(
    "name",
    [
        "Ana\nMaría",
        "Ana\tMaría",
        "Ana\x00María",
        "Ana\u2028María",
        "Ana\rMaría",
        "Ana\u2029María",
        "Ana\x85María",
        "Ana\u200bMaría",
        "Ana\x1fMaría",
    ],
)
def test_control_characters_inside_a_name_rejected(field, name):
    problems = problems_of(**{field: name})
    assert [f for f, _ in problems] == [field]
    assert "control characters" in problems[0][1]


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize("name", ['=HYPERLINK("x")', "+54 11", "-Ana", "@SUM(A1)", "  =1+1"])
def test_formula_prefix_rejected(field, name):
    assert fields_of(**{field: name}) == [field]


@pytest.mark.parametrize("name", ["Ana-María", "Ana+Bea", "a=b", "x@y", "O'Brien-Smith"])
def test_formula_characters_inside_a_name_accepted(name):
    assert check(first_name=name)[1] == name


@pytest.mark.parametrize("value", [None, 5, ["Ana"], {"a": 1}, b"Ana"])
def test_name_must_be_a_string(value):
    assert problems_of(first_name=value) == [("first_name", "must be a string")]


# -- document ------------------------------------------------------------------------------


@pytest.mark.parametrize("document", ["0", "1", "0000000001", "0012345", "9999999999"])
def test_document_digits_kept_as_string(document):
    assert check(document=document)[3] == document


@pytest.mark.parametrize(
    "document",
    [
        30904465,
        0,
        None,
        "",
        "12345678901",
        "123 45",
        " 123",
        "123 ",
        "12a4",
        "-123",
        "+123",
        "1.5",
        "٣٠٩٠٤٤٦٥",  # Arabic-Indic digits
        "３０９",  # fullwidth digits
        "123\n",
    ],
)
def test_bad_document_rejected(document):
    assert fields_of(document=document) == ["document"]


# -- birthdate -----------------------------------------------------------------------------


@pytest.mark.parametrize("birthdate", ["2020-01-01", "1900-02-28", "2000-02-29", "2024-06-15"])
def test_valid_birthdates(birthdate):
    assert check(birthdate=birthdate)[4] == birthdate


@pytest.mark.parametrize(
    "birthdate",
    [
        "20200101",
        "2020-1-1",
        "2020-01-1",
        "01-01-2020",
        "2020/01/01",
        "2020-01-01T00:00",
        " 2020-01-01",
        "2020-01-01 ",
        "",
        "٢٠٢٠-٠١-٠١",
        None,
        20200101,
        date(2020, 1, 1),
    ],
)
def test_birthdate_must_be_yyyy_mm_dd(birthdate):
    problems = problems_of(birthdate=birthdate)
    assert problems == [("birthdate", "must be a date as YYYY-MM-DD")]


@pytest.mark.parametrize(
    "birthdate", ["2020-02-30", "2021-02-29", "2020-13-01", "2020-00-10", "2020-04-31", "0000-01-01"]
)
def test_impossible_calendar_dates_rejected(birthdate):
    assert problems_of(birthdate=birthdate) == [("birthdate", "is not a valid calendar date")]


def test_future_birthdate_rejected():
    assert problems_of(birthdate="2024-06-16") == [("birthdate", "must not be in the future")]


def test_future_birthdate_rejected_with_real_clock():
    tomorrow_everywhere = (latest_birthdate() + timedelta(days=1)).isoformat()
    with pytest.raises(InvalidBet) as caught:
        validate_bet(1, "a", "b", "1", tomorrow_everywhere, 1, latest_birthdate())
    assert caught.value.problems == [("birthdate", "must not be in the future")]


def test_today_accepted_with_real_clock():
    today = date.today().isoformat()
    assert validate_bet(1, "a", "b", "1", today, 1, latest_birthdate())[4] == today


def test_latest_birthdate_is_the_date_at_utc_plus_14():
    kiribati = timezone(timedelta(hours=14))  # Line Islands: the first place where a day begins
    before = datetime.now(kiribati).date()
    latest = latest_birthdate()
    after = datetime.now(kiribati).date()
    assert latest in (before, after)  # (both are the same day unless midnight passed in between)


def test_bet_schema_documents_the_domain_rules():
    """The OpenAPI shape of a bet says what validate_bet enforces (the values written out here)."""
    schema = BetIn.model_json_schema()["properties"]
    assert (schema["first_name"]["minLength"], schema["first_name"]["maxLength"]) == (1, 100)
    assert (schema["last_name"]["minLength"], schema["last_name"]["maxLength"]) == (1, 100)
    assert schema["document"]["pattern"] == "^[0-9]{1,10}$"
    assert (schema["number"]["minimum"], schema["number"]["maximum"]) == (0, 9999)


# -- number --------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 1, 7574, 9999])
def test_valid_numbers(number):
    assert check(number=number)[5] == number


@pytest.mark.parametrize("number", [-1, 10000, True, False, 1.5, 7.0, "7", None, [7]])
def test_bad_numbers_rejected(number):
    assert problems_of(number=number) == [("number", "must be an integer from 0 to 9999")]


# -- all problems at once ------------------------------------------------------------------


def test_invalid_bet_lists_every_problem():
    problems = problems_of(first_name="", document="12x", number=10000)
    assert [f for f, _ in problems] == ["first_name", "document", "number"]


def test_invalid_bet_lists_all_five():
    problems = problems_of(first_name=None, last_name="a\nb", document=1, birthdate="2020-02-30", number=-1)
    assert [f for f, _ in problems] == ["first_name", "last_name", "document", "birthdate", "number"]
    with pytest.raises(InvalidBet) as caught:
        check(first_name=None, last_name="a\nb", document=1, birthdate="2020-02-30", number=-1)
    assert str(caught.value).count(";") == 4
    assert isinstance(caught.value, ValueError)


# -- has_won ---------------------------------------------------------------------------------


def bet(number: int, **changes) -> Bet:
    base = dict(agency=1, first_name="Ana", last_name="Pérez", document="1", birthdate=date(2000, 1, 1), number=number)
    return Bet(**{**base, **changes})


def test_has_won_default_number():
    assert WINNING_NUMBER == 7574
    assert has_won(bet(7574)) is True
    assert has_won(bet(7573)) is False
    assert has_won(bet(0)) is False


def test_has_won_custom_number():
    assert has_won(bet(42), 42) is True
    assert has_won(bet(7574), 42) is False
    assert has_won(bet(0), 0) is True


# -- bets.csv helpers ----------------------------------------------------------------------

TRICKY = [
    Bet(1, "Ana, María", 'Pérez "la" Gómez', "0001", date(1999, 3, 17), 7574),
    Bet(2, "O'Brien", "Ñandú", "30904465", date(2000, 2, 29), 0),
    Bet(3, '"', ",", "9999999999", date(1900, 1, 1), 9999),
    Bet(4, "Zoë\u00a0Ann", "李", "5", date(2024, 1, 1), 1),
    Bet(5, "ends in 7574", "x,7574", "12", date(2001, 1, 1), 7574),
]


def test_encode_rows_format():
    data = encode_rows([(1, "Ana, María", 'Pé"z', "0001", "1999-03-17", 7574), (2, "a", "b", "2", "2000-01-01", 5)])
    assert data == '1,"Ana, María","Pé""z",0001,1999-03-17,7574\n2,a,b,2,2000-01-01,5\n'.encode()


def test_bet_to_row():
    assert bet_to_row(TRICKY[0]) == (1, "Ana, María", 'Pérez "la" Gómez', "0001", "1999-03-17", 7574)


def test_store_and_load_round_trip(tmp_path):
    path = tmp_path / "bets.csv"
    store_bets(path, TRICKY[:2])
    store_bets(path, TRICKY[2:])  # appends
    assert list(load_bets(path)) == TRICKY
    assert (
        path.read_bytes()
        == (
            '1,"Ana, María","Pérez ""la"" Gómez",0001,1999-03-17,7574\n'
            "2,O'Brien,Ñandú,30904465,2000-02-29,0\n"
            '3,"""",",",9999999999,1900-01-01,9999\n'
            "4,Zoë\u00a0Ann,李,5,2024-01-01,1\n"
            '5,ends in 7574,"x,7574",12,2001-01-01,7574\n'
        ).encode()
    )


def test_load_bets_is_a_lazy_generator(tmp_path):
    path = tmp_path / "bets.csv"
    missing = load_bets(tmp_path / "missing.csv")
    assert inspect.isgenerator(missing)  # nothing opened yet: no error until iterated
    with pytest.raises(FileNotFoundError):
        next(missing)

    store_bets(path, TRICKY)
    stream = load_bets(path)
    assert inspect.isgenerator(stream)
    assert next(stream) == TRICKY[0]
    # The file is read as it goes: rows appended after the first read still come out.
    store_bets(path, [TRICKY[0]])
    assert list(stream) == [*TRICKY[1:], TRICKY[0]]


def test_validated_rows_load_back_equal(tmp_path):
    rows = [
        validate_bet(a, b.first_name, b.last_name, b.document, b.birthdate.isoformat(), b.number, LATEST)
        for a, b in enumerate(TRICKY, start=1)
    ]
    path = tmp_path / "bets.csv"
    path.write_bytes(encode_rows(rows))
    loaded = list(load_bets(path))
    assert [bet_to_row(b) for b in loaded] == rows


def test_the_latest_birthdate_turns_when_the_day_begins_at_utc_plus_14(monkeypatch) -> None:
    """Worked out once a second, it still turns at the second the day begins in Kiribati
    (10:00 UTC), and a clock set back is followed."""
    import app.domain as domain

    turn = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC).timestamp()
    seen = []
    for at in (turn - 0.5, turn - 0.1, turn, turn + 0.9, turn - 1):
        monkeypatch.setattr(domain.time, "time", lambda at=at: at)
        seen.append(latest_birthdate().isoformat())
    assert seen == ["2026-12-07", "2026-12-07", "2026-12-08", "2026-12-08", "2026-12-07"]
