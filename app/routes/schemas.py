"""Response and request shapes, as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Any

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


class ChunkStored(BaseModel):
    agency: int = Field(examples=[1])
    stored: int = Field(examples=[250], description="Bets stored by this chunk (or by its first delivery, on a replay)")


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


class UploadProgress(BaseModel):
    upload_id: str = Field(examples=["sha256-3f2a9c"])
    committed: list[tuple[int, int]] = Field(
        examples=[[[0, 5000], [7000, 8000]]], description="Stored line ranges [start, end), merged"
    )
    bets: int = Field(examples=[6000])


class RoundState(BaseModel):
    expected: int = Field(examples=[5])
    done: list[int] = Field(examples=[[1, 3]])
    drawn: bool = Field(examples=[False])
    bets: int = Field(examples=[78697], description="Bets stored so far")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


def bets_request_body() -> dict[str, Any]:
    """The bets route reads its body itself (JSON or CSV), so its schema is declared by hand."""
    schema = BetsChunkIn.model_json_schema()
    schema["properties"]["bets"]["items"] = schema.pop("$defs")["BetIn"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": schema,
                    "example": {
                        "bets": [
                            {
                                "first_name": "Santiago Lionel",
                                "last_name": "Lorca",
                                "document": "30904465",
                                "birthdate": "1999-03-17",
                                "number": 7574,
                            }
                        ]
                    },
                },
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": (
                            "One bet a line: first_name,last_name,document,birthdate,number. No header needed "
                            "(a header line with those names is skipped); LF or CRLF; UTF-8; standard CSV quoting."
                        ),
                    },
                    "example": (
                        "Santiago Lionel,Lorca,30904465,1999-03-17,7574\n"
                        "Agustin Emanuel,Zambrano,21689196,2000-05-10,9325\n"
                    ),
                },
            },
        }
    }
