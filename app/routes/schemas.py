"""Response and request shapes, as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain import DOCUMENT_PATTERN, MAX_NAME_LENGTH, MAX_NUMBER


class BetIn(BaseModel):
    """The documented shape of a bet; the rules themselves live in app/domain.py (one source)."""

    model_config = ConfigDict(extra="forbid")
    first_name: str = Field(examples=["Santiago Lionel"], min_length=1, max_length=MAX_NAME_LENGTH)
    last_name: str = Field(examples=["Lorca"], min_length=1, max_length=MAX_NAME_LENGTH)
    document: str = Field(examples=["30904465"], pattern=f"^{DOCUMENT_PATTERN}$")
    birthdate: str = Field(examples=["1999-03-17"], description="YYYY-MM-DD, not in the future")
    number: int = Field(examples=[7574], ge=0, le=MAX_NUMBER)


class BetsChunkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bets: list[BetIn] = Field(min_length=1)


class LogReceiptOut(BaseModel):
    index: int = Field(examples=[1], description="The chunk's leaf in the transparency log")
    size: int = Field(examples=[2], description="The checkpoint's tree size (> index)")
    leaf: str = Field(description="The leaf's bytes, base64")
    salt: str = Field(description="The salt of the leaf's digest, base64")
    checkpoint: str = Field(description="A signed checkpoint (C2SP signed note) of that size")


class ChunkStored(BaseModel):
    agency: int = Field(examples=[1])
    stored: int = Field(examples=[250], description="Bets stored by this chunk (or by its first delivery, on a replay)")
    log: LogReceiptOut | None = Field(
        None, description="Where the chunk is in the transparency log (absent where the backend keeps none)"
    )


class DoneState(BaseModel):
    agency: int = Field(examples=[1])
    done: int = Field(examples=[3], description="Agencies done so far")
    expected: int = Field(examples=[5])
    drawn: bool = Field(examples=[False])


class Winners(BaseModel):
    agency: int = Field(examples=[1])
    winners: list[str] = Field(
        examples=[["30876370", "24807259"]], description="Documents of this agency's winning bets"
    )


class StoredChunk(BaseModel):
    start: int = Field(examples=[0], description="First bet of the chunk (0-based bet index in the file)")
    end: int = Field(examples=[5000], description="One past its last bet")
    digest: str | None = Field(
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
        description="SHA-256 (hex) of the chunk's body with CRLF made LF; null if stored by an older release",
    )
    log_index: int | None = Field(
        None, examples=[12], description="The chunk's leaf in the transparency log; null where there is none"
    )
    salt: str | None = Field(
        None,
        examples=["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="],
        description="The salt (base64) of the leaf's digest, kept for the agency",
    )


class UploadProgress(BaseModel):
    upload_id: str = Field(examples=["sha256-3f2a9c"])
    # Arrays of two integers (minItems/maxItems), not a prefixItems tuple: schema tools then check it too.
    committed: list[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(
        examples=[[[0, 5000], [7000, 8000]]], description="Stored bet ranges [start, end), merged"
    )
    bets: int = Field(examples=[6000])
    spans: list[StoredChunk] = Field(description="The stored chunks as stored, sorted by start, unmerged")


class UploadSummary(BaseModel):
    upload_id: str = Field(examples=["sha256-3f2a9c"])
    bets: int = Field(examples=[6000], description="Bets stored for this upload")
    chunks: int = Field(examples=[2], description="Chunks stored for this upload")


class UploadList(BaseModel):
    uploads: list[UploadSummary]


class RoundState(BaseModel):
    expected: int = Field(examples=[5])
    done_count: int = Field(
        examples=[2], description="How many agencies are done; which: GET /rounds/{round}/agencies?state=done"
    )
    drawn: bool = Field(examples=[False])
    bets: int = Field(examples=[78697], description="Bets stored so far")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


# The docs page's "Try it out" sends these bets for real, so none of them wins with the default
# number (app/openapi.py swaps the numbers when a server's LOTTERY_WINNING_NUMBER is one of them).
EXAMPLE_NUMBERS = (1234, 9325)

TRY_IT_OUT_WARNING = (
    "**Try it out stores these bets for real** in this server's current round (the example's "
    "numbers do not win). Send an `Idempotency-Key` so that pressing Execute twice stores them once."
)


def example_bets(numbers: tuple[int, int] = EXAMPLE_NUMBERS) -> tuple[dict[str, Any], str]:
    """The JSON and the CSV example chunk: one bet and two bets, with these numbers."""
    as_json = {
        "bets": [
            {
                "first_name": "Santiago Lionel",
                "last_name": "Lorca",
                "document": "30904465",
                "birthdate": "1999-03-17",
                "number": numbers[0],
            }
        ]
    }
    as_csv = (
        f"Santiago Lionel,Lorca,30904465,1999-03-17,{numbers[0]}\n"
        f"Agustin Emanuel,Zambrano,21689196,2000-05-10,{numbers[1]}\n"
    )
    return as_json, as_csv


def bets_request_body() -> dict[str, Any]:
    """The bets route reads its body itself (JSON or CSV), so its schema is declared by hand."""
    schema = BetsChunkIn.model_json_schema()
    schema["properties"]["bets"]["items"] = schema.pop("$defs")["BetIn"]
    as_json, as_csv = example_bets()
    return {
        "requestBody": {
            "required": True,
            "description": TRY_IT_OUT_WARNING,
            "content": {
                "application/json": {"schema": schema, "example": as_json},
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": (
                            "One bet a line: first_name,last_name,document,birthdate,number. No header needed "
                            "(a header line with those names is skipped); LF or CRLF; UTF-8; standard CSV quoting."
                        ),
                    },
                    "example": as_csv,
                },
            },
        }
    }
