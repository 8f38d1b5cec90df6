"""Property tests of the JSON and CSV chunk parsers, alone and through the in-process app.

Alone: on arbitrary bytes and arbitrary JSON-ish structures, ``parse_json`` / ``parse_csv``
either return rows or raise an ``IngestError`` subclass, never anything else. On generated
chunks whose every bet is valid by construction, they accept and return exactly the bets
sent (names trimmed); with one bet broken on purpose, they reject the chunk and name it.

Through the app (TestClient over create_app with a file store): no 5xx, every 4xx is a
problem JSON, a rejected chunk stores nothing (bets.csv and /status unchanged), and an
accepted one is appended to bets.csv exactly as sent, once, even when its key comes back.
"""

from __future__ import annotations

import csv
import io
import json
import string
from collections import Counter
from datetime import date, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import FIELDS, latest_birthdate
from app.ingest import IngestError, InvalidChunk, parse_csv, parse_json
from app.main import create_app
from app.settings import Settings
from tests.figures import record
from tests.helpers import round_file, without_log

MAX_BETS = 50
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------

# Characters a name may hold: letters with accents, other scripts, digits, punctuation that
# needs CSV quoting, symbols, the no-break space. Control characters are for the broken cases.
NAME_CHARS = st.sampled_from(
    string.ascii_letters
    + string.digits
    + " ,.'\"()/&_-=+@#;:!?*%$[]{}<>|~^`"
    + "áéíóúñÑüÜçÇøÅßōŌ"
    + "ЖжΩλ中文字日本語한국어עבריתعربي"
    + "€£¥©®°±×÷…–—‘’“”«»¿¡"
    + "\u00a0\u2009"
)
PADDING = st.sampled_from(["", " ", "  ", "\t", "\u00a0", " \u3000"])  # trimmed when stored


@st.composite
def valid_names(draw) -> str:
    core = draw(
        st.text(NAME_CHARS, min_size=1, max_size=100).filter(lambda s: s.strip() and s.strip()[0] not in "=+-@")
    )
    return draw(PADDING) + core + draw(PADDING)


documents = st.text(st.sampled_from(string.digits), min_size=1, max_size=10)
birthdates = st.dates(min_value=date(1900, 1, 1), max_value=date.today()).map(date.isoformat)
numbers = st.integers(0, 9999)

# Values that break one field, sent as JSON strings or as CSV text; then values only JSON can carry.
BROKEN = {
    "first_name": ["", "   ", "=HYPERLINK(1)", "+54", "-x", "@me", "Ana\nMaría", "Ana\x00", "x" * 101, "\u2028"],
    "last_name": ["", "\t", "a\rb", "b\x1bc", "y" * 101, "\u200bZ"],
    "document": ["", "12345678901", "12a", "１２３", " 123", "-1", "1.0"],
    "birthdate": [
        "1990-02-30",
        "1990-1-1",
        "19900101",
        "1990-01-01T00:00",
        "",
        "0000-01-01",
        (date.today() + timedelta(days=2)).isoformat(),
        "２０００-01-01",
    ],
    "number": ["10000", "-1", " 5", "5.0", "", "０", "12345", "1e3"],
}
BROKEN_JSON_ONLY = {
    "first_name": [5, None, ["Ana"]],
    "document": [30904465, None],
    "birthdate": [19900101],
    "number": ["5", 5.0, True, None, 10_000, -1, 2**63],
}


@st.composite
def valid_bets(draw) -> dict:
    return {
        "first_name": draw(valid_names()),
        "last_name": draw(valid_names()),
        "document": draw(documents),
        "birthdate": draw(birthdates),
        "number": draw(numbers),
    }


def stored_form(agency: int, bet: dict) -> tuple:
    """What bets.csv must hold for a valid bet: names trimmed, number an int."""
    return (
        agency,
        bet["first_name"].strip(),
        bet["last_name"].strip(),
        bet["document"],
        bet["birthdate"],
        int(bet["number"]),
    )


@st.composite
def chunks(draw, broken: bool) -> tuple[list[dict], int | None, str | None]:
    """Valid bets; with ``broken``, one of them gets one bad field. Returns (bets, index, field)."""
    bets = draw(st.lists(valid_bets(), min_size=1, max_size=8))
    if not broken:
        return bets, None, None
    index = draw(st.integers(0, len(bets) - 1))
    field = draw(st.sampled_from(FIELDS))
    value = draw(st.sampled_from(BROKEN[field]))
    bets[index] = {**bets[index], field: value}
    return bets, index, field


def csv_field(value: object, always_quote: bool) -> str:
    """One CSV field, quoted when it must be (or always), quotes doubled.

    Written by hand: Python 3.11's csv.writer leaves a lone "\r" unquoted when the line
    terminator is "\n", which would make the body itself malformed rather than the bet.
    """
    text = str(value)
    if always_quote or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_body(bets: list[dict], data: st.DataObject) -> bytes:
    """The bets as a CSV body, in any of the shapes the README allows."""
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    quote = data.draw(st.booleans())
    lines = []
    if data.draw(st.booleans()):
        header = data.draw(st.sampled_from([FIELDS, [f.upper() for f in FIELDS], [f" {f} " for f in FIELDS]]))
        lines.append(",".join(csv_field(f, quote) for f in header))
    for bet in bets:
        if data.draw(st.integers(0, 9)) == 0:
            lines.append("")  # a blank line is skipped
        number = bet["number"]
        if isinstance(number, int) and data.draw(st.booleans()):
            number = str(number).zfill(data.draw(st.integers(1, 4)))  # "0042" is 42 in CSV
        lines.append(",".join(csv_field(v, quote) for v in [*(bet[f] for f in FIELDS[:4]), number]))
    text = newline.join(lines)
    if data.draw(st.booleans()):
        text += newline  # the last line may or may not end with a newline
    if data.draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode("utf-8")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from([*FIELDS, "bets", "agency", "x", ""]) | st.text(max_size=8), children, max_size=6
        )
    ),
    max_leaves=12,
)
json_documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"bets": st.lists(json_values, max_size=5)}),
    st.fixed_dictionaries({"bets": st.lists(st.fixed_dictionaries({f: json_values for f in FIELDS}), max_size=5)}),
    st.fixed_dictionaries(
        {"bets": st.lists(valid_bets(), max_size=3)}, optional={"extra": json_values, "agency": st.integers(0, 3)}
    ),
)

# -- the parsers alone ---------------------------------------------------------------------------


def rows_of(parsed) -> list[tuple]:
    """The rows of a parser's answer (a ParsedChunk, or a plain list of rows)."""
    rows = parsed.rows if hasattr(parsed, "rows") else parsed
    if hasattr(parsed, "count"):
        assert parsed.count == len(rows)
    return list(rows)


def _parse_or_ingest_error(parser, body: bytes) -> list | None:
    try:
        rows = rows_of(parser(body, 1, MAX_BETS))
    except IngestError:
        return None
    assert rows
    latest = latest_birthdate()
    for row in rows:  # whatever was accepted keeps the rules
        assert row[0] == 1 and len(row) == 6
        assert row[1] == row[1].strip() and row[2] == row[2].strip() and row[1] and row[2]
        assert row[3].isascii() and row[3].isdigit() and len(row[3]) <= 10
        assert date.fromisoformat(row[4]) <= latest and 0 <= row[5] <= 9999
    return rows


def test_parsers_on_arbitrary_bytes_return_rows_or_an_ingest_error() -> None:
    seen = Counter()

    @settings(FAST, max_examples=1000)
    @given(st.one_of(st.binary(max_size=400), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
    def run(body: bytes) -> None:
        seen["inputs"] += 1
        _parse_or_ingest_error(parse_json, body)
        _parse_or_ingest_error(parse_csv, body)

    run()
    record("parsers: arbitrary bytes (hypothesis)", fuzzed=seen["inputs"])


def test_json_parser_on_arbitrary_structures_returns_rows_or_an_ingest_error() -> None:
    seen = Counter()

    @FAST
    @given(json_documents, st.data())
    def run(document: object, data: st.DataObject) -> None:
        seen["inputs"] += 1
        body = json.dumps(document, ensure_ascii=data.draw(st.booleans())).encode()  # any int size
        _parse_or_ingest_error(parse_json, body)

    run()
    record("parsers: JSON structures (hypothesis)", fuzzed=seen["inputs"])


def test_valid_chunks_are_accepted_exactly_and_a_broken_bet_is_named() -> None:
    seen = Counter()

    @settings(FAST, max_examples=250)
    @given(st.booleans(), st.booleans(), st.data())
    def run(as_json: bool, broken: bool, data: st.DataObject) -> None:
        seen["inputs"] += 1
        bets, index, field = data.draw(chunks(broken))
        if as_json and broken and data.draw(st.booleans()) and field in BROKEN_JSON_ONLY:
            bets[index] = {**bets[index], field: data.draw(st.sampled_from(BROKEN_JSON_ONLY[field]))}
        body = orjson.dumps({"bets": bets}) if as_json else csv_body(bets, data)
        parser = parse_json if as_json else parse_csv
        if not broken:
            assert rows_of(parser(body, 1, MAX_BETS)) == [stored_form(1, b) for b in bets]
            return
        with pytest.raises(InvalidChunk) as rejected:
            parser(body, 1, MAX_BETS)
        named = {(p.index, p.field) for p in rejected.value.problems}
        assert (index, field) in named, (bets[index], rejected.value.problems)

    run()
    record("parsers: valid and broken chunks (hypothesis)", fuzzed=seen["inputs"])


def test_only_bets_refuses_exactly_the_chunks_with_a_line_that_is_not_a_bet() -> None:
    """An upload's chunk (``only_bets``) is refused at its first header or blank line, named by
    line number; without a skipped line it stores exactly what the plain parser stores."""
    seen = Counter()

    @settings(FAST, max_examples=200)
    @given(st.lists(valid_bets(), min_size=1, max_size=8), st.data())
    def run(bets: list[dict], data: st.DataObject) -> None:
        seen["inputs"] += 1
        newline = data.draw(st.sampled_from(["\n", "\r\n"]))
        lines = [",".join(csv_field(bet[f], False) for f in FIELDS) for bet in bets]
        extra = data.draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(lines)),
                    st.sampled_from(
                        ["", " ", "\t", ",".join(FIELDS), " First_Name ,LAST_NAME,document,birthdate,number"]
                    ),
                ),
                max_size=2,
            )
        )
        skipped = []  # 1-based line numbers of the lines that are not bets, in the final body
        for position, text in extra:
            lines.insert(position, text)
            skipped = [n + (n > position) for n in skipped] + [position + 1]
        body = (newline.join(lines) + newline).encode()
        if not skipped:
            assert rows_of(parse_csv(body, 1, MAX_BETS, only_bets=True)) == [stored_form(1, b) for b in bets]
            return
        with pytest.raises(InvalidChunk) as refused:
            parse_csv(body, 1, MAX_BETS, only_bets=True)
        first = min(skipped)
        assert [(p.line, p.field) for p in refused.value.problems] == [(first, "bet")]
        assert str(refused.value).startswith(f"line {first} is a ")

    run()
    record("parsers: only_bets chunks (hypothesis)", fuzzed=seen["inputs"])


# -- through the app ------------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/csv",
    "TEXT/CSV; charset=utf-8",
    "application/csv",
    "application/merge-patch+json",
    "text/plain",
    None,
]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("fuzz-app") / "data"
    with TestClient(create_app(Settings(data_dir=data, agencies=3, max_bets_per_chunk=MAX_BETS))) as client:
        yield client, data


def test_app_never_5xx_stores_nothing_rejected_and_everything_accepted_exactly(app_client) -> None:
    client, data = app_client
    bets_path = round_file(data, "bets.csv")
    seen = Counter()
    keys: dict[tuple[int, str], list[tuple]] = {}  # what each idempotency key stored

    @settings(FAST, max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    # Mostly requests that could be accepted (an agency of the round, the right Content-Type),
    # so that both the accepted and the rejected paths get plenty of examples.
    @given(
        st.sampled_from([1, 2, 3, 1, 2, 3, 0, 4]),
        st.sampled_from(["json", "csv", "json", "csv", "bytes", "many"]),
        st.sampled_from([False, False, False, True]),
        st.data(),
    )
    def run(agency: int, kind: str, broken: bool, data_: st.DataObject) -> None:
        seen["inputs"] += 1
        bets, _, _ = data_.draw(chunks(broken and kind != "bytes"))
        if kind == "many":  # one bet more than a chunk may carry: 413
            bets = bets[:1] * (MAX_BETS + 1)
        if kind in ("json", "many"):
            body, content_type = orjson.dumps({"bets": bets}), "application/json"
        elif kind == "csv":
            body, content_type = csv_body(bets, data_), "text/csv"
        else:
            body, content_type = data_.draw(st.binary(max_size=300)), None
        content_type = data_.draw(st.sampled_from([content_type] * 16 + CONTENT_TYPES))
        headers = {"content-type": content_type} if content_type else {}
        key = data_.draw(
            st.one_of(
                st.none(),
                st.none(),
                st.uuids().map(str),
                st.sampled_from(["k1", "k2", '"k1"', "", " ", "k" * 256]),
                st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
            )
        )
        if key is not None:
            headers["Idempotency-Key"] = key
        size_before = bets_path.stat().st_size if bets_path.exists() else 0
        count_before = client.get("/status").json()["bets"]

        r = client.post(f"/agencies/{agency}/bets", content=body, headers=headers)
        seen[r.status_code // 100] += 1
        assert r.status_code < 500, r.text
        new_bytes = bets_path.read_bytes()[size_before:] if bets_path.exists() else b""
        count_after = client.get("/status").json()["bets"]
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["status"] == r.status_code and problem["title"] and problem["detail"]
            assert problem["instance"] == f"/agencies/{agency}/bets"
        if r.status_code != 201:
            assert (new_bytes, count_after) == (b"", count_before), f"{r.status_code} but something was stored"
            if r.status_code == 200:
                assert r.headers["idempotent-replayed"] == "true"
            return
        stored = [(int(a), f, l, d, b, int(n)) for a, f, l, d, b, n in csv.reader(io.StringIO(new_bytes.decode()))]
        assert without_log(r.json()) == {"agency": agency, "stored": len(stored)}
        assert count_after == count_before + len(stored)
        assert kind != "many", "a chunk over the limit was stored"
        if kind != "bytes":
            assert stored == [stored_form(agency, b) for b in bets]  # exactly as sent, in order
        if key is not None:
            bare = key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key
            assert (agency, bare) not in keys, "a reused key stored a second chunk"
            keys[(agency, bare)] = stored

    try:
        run()
    finally:  # also when a 5xx failed the run: the figure counts it, the table says "failed"
        record(
            "app: POST bets in process (hypothesis)",
            fuzzed=seen["inputs"],
            errors_5xx=seen[5],
            accepted=seen[2],
            rejected=seen[4],
        )
    assert seen[2] >= 15 and seen[4] >= 15, f"too few accepted or rejected chunks to mean anything: {dict(seen)}"
