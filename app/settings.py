"""Every server setting, read from the environment and validated once at start.

All variables share the ``LOTTERY_`` prefix (``LOTTERY_AGENCIES=7``). A bad value stops
the server with one line naming the variable, instead of a traceback from a worker.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain import WINNING_NUMBER

MiB = 1024 * 1024


class Settings(BaseSettings):
    # env_ignore_empty: `LOTTERY_TOKENS_FILE=` (as compose passes an unset variable) means "not set".
    model_config = SettingsConfigDict(env_prefix="LOTTERY_", frozen=True, extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(
        Path("./data"), description="Where bets.csv and the round's other files live; created if missing."
    )
    agencies: int = Field(5, ge=1, le=10_000, description="Agencies in the round: ids 1..N.")
    winning_number: int = Field(WINNING_NUMBER, ge=0, le=9999, description="A bet wins when its number equals this.")
    max_body_bytes: int = Field(
        16 * MiB,
        ge=1024,
        le=1024 * MiB,
        description="Largest request body, in bytes; 413 above, refused before reading it.",
    )
    max_bets_per_chunk: int = Field(100_000, ge=1, le=10_000_000, description="Most bets in one chunk; 413 above.")
    lock_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for the storage lock before answering 503."
    )
    retry_after: int = Field(
        1, ge=1, le=3600, description="Seconds in the Retry-After of a 425 (winners before the draw)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the lottery logger; DEBUG adds one line per stored bet."
    )
    tokens_file: Path | None = Field(
        None, description='JSON {"1": "token", ...}; when set, the agency routes need a bearer token.'
    )
    body_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a client may take to send a request body; 408 after."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a client may take to send a request's headers; then the connection is closed.",
    )
    database_url: str | None = Field(
        None, description="postgresql://... selects the PostgreSQL backend instead of files."
    )


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, e.g. ``LOTTERY_AGENCIES='x': Input should be a valid integer``."""
    parts = []
    for item in error.errors():
        name = "LOTTERY_" + "_".join(str(p) for p in item["loc"]).upper()
        parts.append(f"{name}={item.get('input')!r}: {item['msg']}")
    return "invalid setting: " + "; ".join(parts)


@functools.cache
def get_settings() -> Settings:
    return Settings()


def load_or_exit() -> Settings:
    """Validate the environment for a command-line entry point; exit 2 with one line on error."""
    try:
        return get_settings()
    except ValidationError as error:
        print(f"lottery: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def preflight() -> Settings:
    """What gunicorn's master checks once before forking workers: settings and tokens file."""
    from app.tokens import Tokens, TokensError

    settings = load_or_exit()
    from app.store import round_settings_warning

    if warning := round_settings_warning(settings):
        print(warning, file=sys.stderr)
    if settings.tokens_file is None:
        print(
            "lottery: WARNING: LOTTERY_TOKENS_FILE is not set: the agency routes are OPEN, any client "
            "may act for any agency. Generate tokens with `python -m app.tokens` for real use.",
            file=sys.stderr,
        )
        return settings
    try:
        Tokens.load(settings.tokens_file, settings.agencies)
    except TokensError as error:
        print(f"lottery: invalid setting: LOTTERY_TOKENS_FILE: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings
