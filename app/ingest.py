"""Turn one request body (JSON or CSV) into validated rows: the hot path of every upload.

A chunk is all or nothing, so parsing collects *every* bad bet (up to a cap) before
answering, and nothing here touches storage. Rows come out ready for
:func:`app.domain.encode_rows` or a database COPY.

Ambiguous input is refused, never guessed at: a charset other than UTF-8 (415), a JSON key
given twice in one object (422). A CSV body of plain bet lines takes the compiled fast path
(app/csv_fast.py); every other body the general path, which names each problem.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

import orjson

from app import csv_fast
from app.csv_fast import Body
from app.domain import (
    FIELDS,
    InvalidBet,
    Row,
    decode_rows,
    encode_rows,
    latest_birthdate,
    parse_number_text,
    validate_bet,
)

MAX_REPORTED_PROBLEMS = 100
JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")
_HEADER = list(FIELDS)


@dataclass(frozen=True, slots=True)
class ParsedChunk:
    """A valid chunk, already in the stored format: ``payload`` holds ``count`` rows."""

    payload: bytes
    count: int

    @property
    def rows(self) -> list[Row]:
        return decode_rows(self.payload)


@dataclass(frozen=True, slots=True)
class BetProblem:
    index: int  # 0-based position of the bet in the chunk
    field: str  # offending field, or "bet" when the bet as a whole is wrong
    message: str
    line: int | None = None  # 1-based line in a CSV body

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"index": self.index, "field": self.field, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        return out


class IngestError(Exception):
    """Base of everything that makes a chunk unacceptable."""


class MalformedBody(IngestError):
    """The body cannot be parsed at all (400)."""


class UnsupportedMediaType(IngestError):
    """Neither JSON nor CSV (415)."""


class TooManyBets(IngestError):
    """More bets than one chunk may carry (413)."""

    def __init__(self, limit: int):
        super().__init__(f"a chunk may carry at most {limit} bets; split the upload into smaller chunks")
        self.limit = limit


@dataclass
class InvalidChunk(IngestError):
    """Parsed, but some bets break the rules (422). None of the chunk is stored."""

    problems: list[BetProblem]
    total: int = 0  # how many problems there were, even past the reporting cap
    bets: int = 0  # how many bets the chunk had
    detail: str = field(default="")

    def __post_init__(self) -> None:
        super().__init__(self.detail or f"{self.total} invalid bet field(s) in a chunk of {self.bets}")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _check_charset(content_type: str) -> None:
    """Bodies are UTF-8: a declared charset must say so, never be decoded as UTF-8 regardless."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if value.lower() != "utf-8":
            raise UnsupportedMediaType(f"charset {value!r} is not supported; send the body as charset=utf-8")


def parse_chunk(
    body: Body, content_type: str | None, agency: int, max_bets: int, only_bets: bool = False
) -> ParsedChunk:
    """``only_bets``: the chunk belongs to an upload (``Upload-Id``), whose chunks carry bet lines
    and nothing else; a header or blank line then refuses the chunk instead of being skipped."""
    kind = media_type(content_type)
    if kind in JSON_TYPES or kind.endswith("+json"):
        _check_charset(content_type or "")
        return parse_json(body, agency, max_bets)
    if kind in CSV_TYPES:
        _check_charset(content_type or "")
        return parse_csv(body, agency, max_bets, only_bets)
    raise UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not supported; send application/json or text/csv")


class _Collector:
    """Gathers rows and problems; the chunk fails as a whole if any problem was seen."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.problems: list[BetProblem] = []
        self.total = 0

    def add_problem(self, index: int, field: str, message: str, line: int | None = None) -> None:
        self.total += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(BetProblem(index, field, message, line))

    def add_invalid(self, index: int, error: InvalidBet, line: int | None = None) -> None:
        for field_name, message in error.problems:
            self.add_problem(index, field_name, message, line)

    def result(self, bets: int) -> ParsedChunk:
        if self.total:
            raise InvalidChunk(self.problems, self.total, bets)
        if not bets:
            raise InvalidChunk([], 0, 0, "the chunk has no bets")
        return ParsedChunk(encode_rows(self.rows), len(self.rows))


def _is_agency(value: object, agency: int) -> bool:
    return type(value) is int and value == agency  # not True, not 1.0: the same strictness as "number"


class _DuplicateKeys(dict[str, object]):
    """A JSON object that named some key more than once (``keys``): refused, never last-wins."""

    def __init__(self, pairs: list[tuple[str, object]], keys: list[str]):
        super().__init__(pairs)
        self.keys_repeated = keys


def _object_from_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) == len(pairs):
        return document
    seen: set[str] = set()
    repeated: dict[str, None] = {}  # in the order of their second naming
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    return _DuplicateKeys(pairs, list(repeated))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _may_repeat_keys(body: Body, document: object) -> bool:
    """False only when ``body`` certainly has no object with a repeated key.

    orjson keeps the last of repeated keys silently. Every member of a JSON object has one
    ``:`` outside strings, and orjson writes colons inside strings as they are, so the body
    and ``orjson.dumps(document)`` have as many colons exactly when no key was dropped,
    unless a colon was written as an escape (``\\u003a``) in the body: then look closer.
    """
    if b"\\u003" in body:
        return True
    try:
        return orjson.dumps(document).count(b":") != body.count(b":")
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return True


def _load_json(body: Body) -> object:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedBody(f"body is not valid JSON: {error}") from None
    if not _may_repeat_keys(body, document):
        return document
    # The exact (slower) parse, only for the rare body that may repeat a key: it keeps every
    # object's pairs, so a repeated key is named instead of silently replaced.
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_object_from_pairs, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise MalformedBody(f"body is not valid JSON: {error}") from None


def parse_json(body: Body, agency: int, max_bets: int) -> ParsedChunk:
    document = _load_json(body)
    if isinstance(document, _DuplicateKeys):
        key = document.keys_repeated[0]
        raise InvalidChunk([], 0, 0, f'the top-level key "{key}" is given more than once')
    if not isinstance(document, dict) or not isinstance(document.get("bets"), list):
        raise InvalidChunk([], 0, 0, 'body must be a JSON object {"bets": [...]}')
    extra = set(document) - {"bets"}
    if extra:
        raise InvalidChunk([], 0, 0, f"unknown top-level field(s): {', '.join(sorted(extra))}")
    bets = document["bets"]
    if len(bets) > max_bets:
        raise TooManyBets(max_bets)
    latest = latest_birthdate()
    out = _Collector()
    append = out.rows.append
    for index, bet in enumerate(bets):
        if type(bet) is not dict:
            if isinstance(bet, _DuplicateKeys):
                for name in bet.keys_repeated:
                    out.add_problem(index, name, "is given more than once")
            else:
                out.add_problem(index, "bet", "must be a JSON object")
            continue
        if len(bet) != 5 or not all(name in bet for name in FIELDS):
            missing = [name for name in FIELDS if name not in bet]
            unknown = [
                name for name in bet if name not in FIELDS and not (name == "agency" and _is_agency(bet[name], agency))
            ]
            for name in missing:
                out.add_problem(index, name, "is required")
            for name in unknown:
                out.add_problem(
                    index, name, "is not a bet field" if name != "agency" else "does not match the agency in the URL"
                )
            if missing or unknown:
                continue
        try:
            append(
                validate_bet(
                    agency,
                    bet["first_name"],
                    bet["last_name"],
                    bet["document"],
                    bet["birthdate"],
                    bet["number"],
                    latest,
                )
            )
        except InvalidBet as error:
            out.add_invalid(index, error)
    return out.result(len(bets))


def parse_plain_csv(body: Body, agency: int, max_bets: int) -> ParsedChunk | None:
    """The chunk if ``body`` is plain bet lines, all valid (app/csv_fast.py); None to take the general path.

    A plain body holds only bet lines, so ``only_bets`` changes nothing here."""
    plain = csv_fast.parse_plain(body, agency)
    if plain is None:
        return None
    payload, count = plain
    if count > max_bets:  # every line is a valid bet: the general path would say the same
        raise TooManyBets(max_bets)
    return ParsedChunk(payload, count)


def _not_a_bet(line: int, what: str) -> InvalidChunk:
    message = f"line {line} is {what}, not a bet: a chunk with Upload-Id carries bet lines only"
    return InvalidChunk([BetProblem(0, "bet", message, line)], 1, 0, message)


def parse_csv(body: Body, agency: int, max_bets: int, only_bets: bool = False) -> ParsedChunk:
    plain = parse_plain_csv(body, agency, max_bets)
    if plain is not None:
        return plain
    return parse_csv_general(body, agency, max_bets, only_bets)


def parse_csv_general(body: Body, agency: int, max_bets: int, only_bets: bool = False) -> ParsedChunk:
    """Any CSV body, bet by bet: the rows, or every problem named."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        raise MalformedBody(f"body is not valid UTF-8 (line {line}, byte {error.start})") from None
    if text.startswith("\ufeff"):  # a BOM from spreadsheet exports is not part of the first name
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    latest = latest_birthdate()
    out = _Collector()
    append = out.rows.append
    index = 0
    line = 1  # line where the current record starts
    try:
        for record in reader:
            if not record or (only_bets and len(record) == 1 and not record[0].strip()):
                if only_bets:
                    raise _not_a_bet(line, "a blank line")
                line = reader.line_num + 1
                continue
            if (only_bets or (index == 0 and not out.rows)) and [f.strip().lower() for f in record] == _HEADER:
                if only_bets:
                    raise _not_a_bet(line, "a header line")
                line = reader.line_num + 1
                continue  # an optional header row is accepted and skipped
            if index >= max_bets:
                raise TooManyBets(max_bets)
            if len(record) != 5:
                out.add_problem(index, "bet", f"has {len(record)} fields, expected 5: {','.join(FIELDS)}", line)
            else:
                first_name, last_name, document, birthdate, number = record
                try:
                    value: int | str
                    try:
                        value = parse_number_text(number)
                    except ValueError:
                        value = number  # let validate_bet report it together with the rest
                    append(validate_bet(agency, first_name, last_name, document, birthdate, value, latest))
                except InvalidBet as error:
                    out.add_invalid(index, error, line)
            index += 1
            line = reader.line_num + 1
    except csv.Error as error:
        raise MalformedBody(f"malformed CSV at line {line}: {error}") from None
    return out.result(index)
