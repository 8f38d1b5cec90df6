"""Before sending anything: prove that what the server stored for an upload is this file's.

CONTRACT-uploads steps 2 and 3. The server keeps, for every stored range of bets, the sha256
of its LF-normalized body. The uploader recomputes that digest over the same bets of the
current file; a range that no longer matches (the file changed between runs: a line deleted or
inserted, lines reordered) would make a resume store some bet twice and skip another, so the
uploader refuses instead. When the file's own upload has nothing stored but the agency has other
uploads this round, the one that verifies completely is resumed (the same file with a rejected
line fixed in place, or with lines appended); anything else is the user's call.
"""

from __future__ import annotations

import hashlib
import logging

from client.http import ClientError, Rejected
from client.lines import bet_blocks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from client.http import Server
    from client.lines import Block, FilePath

log = logging.getLogger("client")

FIX_IN_PLACE = "correcting a rejected line in place, keeping the same lines in the same order, resumes cleanly"


class Span(tuple[int, int, "str | None"]):
    """Bets ``[start, end)`` of an upload, stored as one chunk; ``digest`` None if unknown.

    A plain tuple subclass, not a namedtuple: that one compiles code at import (start-up counts)."""

    __slots__ = ()

    def __new__(cls, start: int, end: int, digest: str | None) -> Span:
        return super().__new__(cls, (start, end, digest))

    @property
    def start(self) -> int:
        return self[0]

    @property
    def end(self) -> int:
        return self[1]

    @property
    def digest(self) -> str | None:
        return self[2]


class RangeCheck(tuple["str | None", "int | None", "int | None"]):
    """What the current file holds for one range: its digest and file lines (digest None: past the end)."""

    __slots__ = ()

    def __new__(cls, digest: str | None, first_line: int | None, last_line: int | None) -> RangeCheck:
        return super().__new__(cls, (digest, first_line, last_line))

    @property
    def digest(self) -> str | None:
        return self[0]

    @property
    def first_line(self) -> int | None:
        return self[1]

    @property
    def last_line(self) -> int | None:
        return self[2]


def fetch_spans(api: Server, agency: int, upload_id: str) -> list[Span]:
    """The upload's stored chunks; a server without digests gives its merged ranges, digest unknown."""
    answer = api.request("GET", f"/agencies/{agency}/uploads/{upload_id}").json()
    if "spans" in answer:
        spans = [Span(int(s["start"]), int(s["end"]), s.get("digest")) for s in answer["spans"]]
    else:
        spans = [Span(int(s), int(e), None) for s, e in answer["committed"]]
    return sorted(spans, key=lambda s: s.start)


def list_uploads(api: Server, agency: int) -> list[tuple[str, int]] | None:
    """(upload id, bets) of the agency's uploads this round; None if the server cannot say."""
    try:
        answer = api.request("GET", f"/agencies/{agency}/uploads").json()
    except Rejected as error:
        if error.status in (404, 405):  # an older server: no such route
            log.debug("action: verificacion | result: skipped | motivo: the server does not list uploads")
            return None
        raise
    return [(u["upload_id"], int(u["bets"])) for u in answer["uploads"]]


def check_ranges(
    path: FilePath, ranges: list[tuple[int, int]], blocks: list[Block] | None = None
) -> tuple[list[RangeCheck], int]:
    """The digest of each of ``ranges`` (sorted, disjoint) over the file's bets, in one pass; and the bet count."""
    hashers = [hashlib.sha256() for _ in ranges]
    first: list[int | None] = [None] * len(ranges)
    last: list[int | None] = [None] * len(ranges)
    r = 0
    base = 0
    for block in bet_blocks(path) if blocks is None else blocks:
        count = block.count
        top = base + count
        while r < len(ranges) and ranges[r][0] < top:
            start, end = ranges[r]
            a, b = max(start, base) - base, min(end, top) - base
            if a < b:
                hashers[r].update(block.body(a, b))
                if first[r] is None:
                    first[r] = block.numbers[a]
                last[r] = block.numbers[b - 1]
            if end > top:
                break
            r += 1
        base = top
    checks = [
        RangeCheck(h.hexdigest() if end <= base else None, first[i], last[i])
        for i, (h, (_, end)) in enumerate(zip(hashers, ranges, strict=True))
    ]
    return checks, base


def first_mismatch(path: FilePath, spans: list[Span], blocks: list[Block] | None = None) -> str | None:
    """None when every span with a digest matches the file; else a message naming the first that does not."""
    checks, bets = check_ranges(path, [(s.start, s.end) for s in spans], blocks)
    for span, check in zip(spans, checks, strict=True):
        where = f"bets {span.start}-{span.end - 1} (numbered from 0)"
        if check.digest is None:
            return (
                f"{where} are stored on the server but this file has only {bets} bets: "
                f"the file changed since those bets were stored: put those lines back as they were; {FIX_IN_PLACE}"
            )
        if span.digest is not None and span.digest != check.digest:
            return (
                f"{where}, lines {check.first_line}-{check.last_line} of {path}, do not match what the server stored: "
                f"the file changed since those bets were stored: put those lines back as they were; {FIX_IN_PLACE}"
            )
    return None


def verify(path: FilePath, upload_id: str, spans: list[Span], blocks: list[Block] | None = None) -> None:
    """Refuse (ClientError) unless every stored span is still this file's; warn for unknown digests."""
    problem = first_mismatch(path, spans, blocks) if spans else None
    if problem:
        raise ClientError(f"upload {upload_id}: {problem}. Nothing was sent")
    unknown = [s for s in spans if s.digest is None]
    if unknown:
        log.warning(
            "action: verificacion | result: warning | upload_id: %s | rangos_sin_digest: %d | "
            "motivo: stored by an older server, cannot be checked against the file",
            upload_id,
            len(unknown),
        )


def choose_upload(
    api: Server,
    agency: int,
    path: FilePath,
    own_id: str,
    *,
    forced: bool,
    another_file: bool,
    blocks: list[Block] | None = None,
) -> tuple[str, list[Span]]:
    """The upload id to send under and its stored spans, verified against the file (steps 2 and 3).

    The agency's list of uploads comes first: for a fresh file it is the only request (its own
    upload is not listed, and nothing else is either, or the others are checked below)."""
    listed = None if forced or another_file else list_uploads(api, agency)
    own_listed = listed is None or any(u == own_id and bets > 0 for u, bets in listed)
    spans = fetch_spans(api, agency, own_id) if own_listed else []
    if spans or listed is None:
        verify(path, own_id, spans, blocks)
        return own_id, spans
    others = [(u, bets) for u, bets in listed if u != own_id and bets > 0]
    if not others:
        return own_id, spans
    matching = []
    for upload_id, _ in others:
        candidate = fetch_spans(api, agency, upload_id)
        if (
            candidate
            and all(s.digest is not None for s in candidate)
            and first_mismatch(path, candidate, blocks) is None
        ):
            matching.append((upload_id, candidate))
    if len(matching) == 1:
        upload_id, candidate = matching[0]
        log.info(
            "action: carga | result: resuming | agencia: %d | upload_id: %s | motivo: "
            "the bets it stored match this file (same lines, fixed in place or appended)",
            agency,
            upload_id,
        )
        return upload_id, candidate
    named = ", ".join(f"{u} ({bets} bets)" for u, bets in others)
    why = "more than one of them matches this file" if matching else "none of them matches this file"
    raise ClientError(
        f"this file (upload {own_id}) has nothing stored, but agency {agency} has other uploads this round: "
        f"{named}; {why}. Rerun with --upload-id ID to continue one of them, or with --another-file if this "
        "is really a different file whose bets must be stored as well. Nothing was sent"
    )
