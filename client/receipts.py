"""The receipts file: what the log handed the uploader for each chunk, kept for ``verify``.

One file per agency file (``--receipts``, by default ``<file>.receipts.jsonl`` beside it), JSON
lines appended and fsynced one at a time, so a crash keeps every line written before it (a torn
last line is skipped when read). A line per acknowledged chunk, naming its round (null when the
server had no rounds), agency and upload (so agencies may share one file)::

    {"kind": "chunk", "round": 3, "agency": 1, "upload_id": "sha256-...", "start": 0, "end": 5000,
     "lines": [2, 5001], "key": "sha256-...:0-5000", "salt": "<base64>", "index": 17, "size": 18,
     "leaf": "<base64 leaf bytes>", "checkpoint": "<signed checkpoint note>"}

A rerun sends the salt its upload's receipts hold (docs/uploader.md "Receipts"). Nothing is
written for a server without the log. A file that cannot be written costs the receipts, not the
upload: one warning, and ``verify`` then learns the chunks from the server's upload state.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from client.http import ClientError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from client.lines import FilePath

log = logging.getLogger("client")
SUFFIX = ".receipts.jsonl"


def default_path(file: FilePath) -> str:
    return f"{file}{SUFFIX}"


def read(path: str) -> list[dict[str, Any]]:
    """Every whole record of the file ([] when there is none); a line that is not one is skipped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ClientError(f"cannot read the receipts file {path}: {error.strerror}") from None
    records = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            log.warning(
                "action: recibos | result: warning | detail: %s:%d is not a whole record: skipped", path, number
            )
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Receipts:
    """The receipts file, appended to by the sender threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records = read(path)
        self.broken = False  # a write failed: the rest are not attempted
        self._lock = threading.Lock()

    def salt(self, round_id: int | None, agency: int, upload_id: str) -> str | None:
        """The salt kept for this upload (base64), if any."""
        for r in self.records:
            if (r.get("round"), r.get("agency"), r.get("upload_id")) == (round_id, agency, upload_id) and r.get("salt"):
                return str(r["salt"])
        return None

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            self.records.append(record)
            if self.broken:
                return
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)  # acknowledged by the server: kept whatever happens next
                finally:
                    os.close(fd)
            except OSError as error:
                self.broken = True
                log.warning(
                    "action: recibos | result: fail | file: %s | error: %s | detail: the upload goes on without "
                    "receipts; verify will learn the chunks from the server (--receipts FILE to keep them elsewhere)",
                    self.path,
                    error.strerror,
                )
