"""The operator page's transparency panel: what its snapshot carries of the log (issue 23).

The round's own fields are exactly ``GET /rounds/{n}``'s (``log``, ``seed_commitment``,
``draw``: one rule, ``RoundOut.of``), so the page shows and checks what an agency's
``client verify`` reads. Beside them, ``transparency``: the log's origin and verifier key
(``GET /log/vkey``) and its latest signed checkpoint's size and root; null where the backend
keeps no log (PostgreSQL, for now). The page recomputes the commitment and the draw itself
(app/static/operator.js): the server only hands it the inputs.

Cost per refresh: the round's info (already read for the page) and the latest checkpoint,
which the log keeps per worker and reads only the lines added since: O(1) in agencies.
"""

from __future__ import annotations

from typing import Any

from app.routes.rounds import RoundOut
from app.store.base import LogView, RoundInfo
from tlog import b64, checkpoint, note

ROUND_FIELDS = {"log", "seed_commitment", "draw"}  # GET /rounds/{n}'s, as it spells them


def round_log(info: RoundInfo) -> dict[str, Any]:
    """The round's leaves, commitment and draw, as ``GET /rounds/{n}`` shows them."""
    return RoundOut.of(info).model_dump(include=ROUND_FIELDS)


def log_head(log: LogView | None) -> dict[str, Any] | None:
    """``{origin, vkey, checkpoint: {size, root} | null}``; None without a log. Blocking (reads
    the latest checkpoint): off the event loop."""
    if log is None:
        return None
    latest = log.latest()
    head = None
    if latest is not None:
        # Our own checkpoint, read back: its text is enough (agencies check the signature).
        signed = checkpoint.Checkpoint.parse(note.parse_note(latest[1]).text)
        head = {"size": signed.size, "root": b64.encode(signed.root)}
    return {"origin": log.origin, "vkey": log.vkey, "checkpoint": head}


def transparency(log: LogView | None, info: RoundInfo) -> dict[str, Any]:
    """What the page's snapshot adds: the round's log fields and the log's head."""
    return {**round_log(info), "transparency": log_head(log)}
