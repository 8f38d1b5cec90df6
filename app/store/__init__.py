"""Storage backends behind one interface (see base.py). ``open_store`` picks one from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.settings import Settings
from app.store.base import (
    AgencyClosed,
    Chunk,
    ChunkReceipt,
    DataCorrupt,
    DoneReceipt,
    IdempotencyMismatch,
    RangeConflict,
    RoundError,
    RoundInfo,
    RoundNotCurrent,
    RoundNotFound,
    RoundParameters,
    RoundStatus,
    RoundStillOpen,
    StorageBusy,
    StorageUnavailable,
    Store,
    StoredSpan,
    StoreError,
    UploadSpan,
    UploadState,
    UploadSummary,
    body_digest,
)

if TYPE_CHECKING:
    from tlog import note

__all__ = [
    "AgencyClosed",
    "Chunk",
    "ChunkReceipt",
    "DataCorrupt",
    "DoneReceipt",
    "IdempotencyMismatch",
    "RangeConflict",
    "RoundInfo",
    "RoundNotCurrent",
    "RoundNotFound",
    "RoundError",
    "RoundParameters",
    "RoundStatus",
    "RoundStillOpen",
    "StorageBusy",
    "StorageUnavailable",
    "Store",
    "StoreError",
    "StoredSpan",
    "UploadSpan",
    "UploadState",
    "UploadSummary",
    "body_digest",
    "open_store",
    "round_settings_warning",
    "stored_round",
]


def open_store(settings: Settings, *, signing: bool = True) -> Store:
    """The settings' store. ``signing`` False: a PostgreSQL store for a tool that only reads (an
    export) needs no key and appends nothing to the log."""
    if settings.database_url:
        from app.store.postgres import PostgresStore  # imported only when chosen: psycopg is optional

        return PostgresStore(
            settings.database_url,
            settings.agencies,
            settings.winning_number,
            settings.lock_timeout,
            log_signer=log_signer(settings) if signing else None,
            log_origin=settings.log_origin,
        )
    from app.store.files import FileStore

    return FileStore(
        settings.data_dir,
        settings.agencies,
        settings.winning_number,
        settings.lock_timeout,
        log_key=settings.log_key_file,
        log_origin=settings.log_origin,
    )


def log_signer(settings: Settings) -> note.Signer:
    """The transparency log's signer: LOTTERY_LOG_KEY_FILE, else ``<data dir>/log.key``, made on the
    first start (the data dir too, which the PostgreSQL backend uses for nothing else). On
    PostgreSQL every host must hold the same key: the database records it (pg_log.register_key)
    and a host with another one refuses to write. LogKeyError when the file cannot be used."""
    from app.store.txlog import load_signer

    create = settings.log_key_file is None
    if create:
        settings.log_key_path.parent.mkdir(parents=True, exist_ok=True)
    return load_signer(settings.log_key_path, settings.log_origin, create=create)


def stored_round(settings: Settings) -> tuple[RoundParameters | None, str]:
    """The parameters of the round in progress in the settings' storage (None where no server has
    run yet), read without opening a store (nothing is created or repaired), and where they are."""
    if settings.database_url:
        from app.store import postgres

        return postgres.recorded_round(settings.database_url), "the database"
    from app.store import files

    ids = files.round_ids(settings.data_dir)
    folder = files.round_dir(settings.data_dir, ids[-1]) if ids else settings.data_dir
    return files.recorded_round(settings.data_dir), str(folder / files.ROUND)


def round_settings_warning(settings: Settings) -> str | None:
    """One loud line when the stored round was started with other settings than these, else None.

    The gunicorn master prints it once at start (app.preflight): the round keeps its recorded
    parameters whatever the settings say now.
    """
    recorded, where = stored_round(settings)
    if recorded is None or (recorded.agencies, recorded.winning_number) == (
        settings.agencies,
        settings.winning_number,
    ):
        return None
    return (
        f"lottery: WARNING: the round in progress was started with LOTTERY_AGENCIES={recorded.agencies} "
        f"LOTTERY_WINNING_NUMBER={recorded.winning_number if recorded.winning_number is not None else 'random'} "
        f"(recorded in {where}); the settings now say "
        f"LOTTERY_AGENCIES={settings.agencies} LOTTERY_WINNING_NUMBER={settings.winning_number}. "
        "The round KEEPS its recorded values until it ends; start a new round to use the new ones."
    )
