"""Every server setting, read from the environment and validated once at start.

All variables share the ``LOTTERY_`` prefix (``LOTTERY_AGENCIES=7``). A bad value stops
the server with one line naming the variable, instead of a traceback from a worker.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain import MAX_AGENCIES, WINNING_NUMBER

MiB = 1024 * 1024
DEFAULT_DATA_DIR = Path("data")  # relative to where the server (or app.export) runs
DEFAULT_LOG_ORIGIN = "lottery.local/log"
LOG_KEY = "log.key"  # the log's key in the data dir when LOTTERY_LOG_KEY_FILE is not set


class Settings(BaseSettings):
    # env_ignore_empty: `LOTTERY_TOKENS_FILE=` (as compose passes an unset variable) means "not set".
    model_config = SettingsConfigDict(env_prefix="LOTTERY_", frozen=True, extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Where bets.csv and the round's other files live; created if missing."
    )
    agencies: int = Field(
        5,
        ge=1,
        le=MAX_AGENCIES,
        description="Agencies of a new round: ids 1..N (a round keeps the count it opened with).",
    )
    winning_number: int = Field(
        WINNING_NUMBER,
        ge=0,
        le=9999,
        description="Winning number of a new round (a round keeps the number it opened with).",
    )
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
    body_budget_bytes: int | None = Field(
        None,
        ge=1024,
        le=64 * 1024 * MiB,
        description=(
            "Bytes of request bodies one worker holds at once (read, parsed or being stored); a body that "
            "does not fit waits up to 2 s, then gets 503 + Retry-After before it is read. "
            "Default: LOTTERY_MAX_BODY_BYTES (one body at the limit, or many smaller ones)."
        ),
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description=(
            "Connections one worker serves at once; a request over it gets 503. "
            "Default: the worker's open-file limit (ulimit -n) minus 64."
        ),
    )
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) file: with LOTTERY_TLS_KEY, serve HTTPS.")
    tls_key: Path | None = Field(None, description="PEM private key of LOTTERY_TLS_CERT.")
    log_origin: str = Field(
        DEFAULT_LOG_ORIGIN,
        min_length=1,
        max_length=200,
        pattern=r"^[!-*,-~]+$",
        description="The transparency log's name: the origin line of its checkpoints and its key's name.",
    )
    log_key_file: Path | None = Field(
        None,
        description=(
            "The log's signing key (mode 0600; `python -m tlog keygen ORIGIN PATH` makes one). "
            "Default: <data dir>/log.key, made on the first start. On PostgreSQL every host must use the same key."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.body_budget_bytes is not None and self.body_budget_bytes < self.max_body_bytes:
            raise ValueError("LOTTERY_BODY_BUDGET_BYTES must be at least LOTTERY_MAX_BODY_BYTES")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("LOTTERY_TLS_CERT and LOTTERY_TLS_KEY go together: set both or neither")
        return self

    @property
    def log_key_path(self) -> Path:
        return self.log_key_file if self.log_key_file is not None else self.data_dir / LOG_KEY

    @property
    def body_budget(self) -> int:
        # One body at the limit per worker: parsing costs about 13x a CSV body's size (measured,
        # bench/load_bounds.py), so a second one would double the peak for no throughput.
        return self.body_budget_bytes if self.body_budget_bytes is not None else self.max_body_bytes

    @property
    def connection_limit(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(16, soft - 64) if soft != resource.RLIM_INFINITY else 100_000


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, e.g. ``LOTTERY_AGENCIES='x': Input should be a valid integer``."""
    parts = []
    for item in error.errors():
        if not item["loc"]:  # a rule across settings: its message names them
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
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


def tls_problem(cert: Path, key: Path) -> str | None:
    """Why this certificate and key cannot serve HTTPS, or None when they can."""
    import ssl

    for path in (cert, key):
        if not path.is_file():
            return f"{path} is not a readable file"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as error:
        return f"{cert} and {key} are not a PEM certificate and its private key ({error.reason or error})"
    except OSError as error:
        return f"cannot read {error.filename}: {error.strerror}"
    return None


def data_dir_problem(path: Path) -> str | None:
    """Why the file backend cannot keep its files in ``path`` (created if missing), or None.

    Tried, not inferred from the mode bits: root ignores them, and /proc or a read-only mount
    refuse a write whatever they say. The probe file is removed at once.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "not a directory"
    except OSError as error:
        return f"cannot create it: {error.strerror}"
    if not path.is_dir():
        return "not a directory"
    for what, attempt in (("read", lambda: os.listdir(path)), ("write in", lambda: _probe_write(path))):
        try:
            attempt()
        except OSError as error:
            return f"cannot {what} it: {error.strerror}"
    return None


def _probe_write(path: Path) -> None:
    fd, name = tempfile.mkstemp(dir=path, prefix=".lottery-probe-")
    os.close(fd)
    os.unlink(name)
