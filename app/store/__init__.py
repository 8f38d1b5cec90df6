"""Storage backends behind one interface (see base.py). ``open_store`` picks one from settings."""

from __future__ import annotations

from app.settings import Settings
from app.store.base import (
    AgencyClosed,
    Chunk,
    ChunkReceipt,
    DoneReceipt,
    IdempotencyMismatch,
    RangeConflict,
    RoundStatus,
    StorageBusy,
    StorageUnavailable,
    Store,
    StoreError,
    UploadSpan,
    UploadState,
)

__all__ = [
    "AgencyClosed",
    "Chunk",
    "ChunkReceipt",
    "DoneReceipt",
    "IdempotencyMismatch",
    "RangeConflict",
    "RoundStatus",
    "StorageBusy",
    "StorageUnavailable",
    "Store",
    "StoreError",
    "UploadSpan",
    "UploadState",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    if settings.database_url:
        from app.store.postgres import PostgresStore  # imported only when chosen: psycopg is optional

        return PostgresStore(settings.database_url, settings.agencies, settings.winning_number, settings.lock_timeout)
    from app.store.files import FileStore

    return FileStore(settings.data_dir, settings.agencies, settings.winning_number, settings.lock_timeout)
