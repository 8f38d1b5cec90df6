"""``verify``: check a round against the log, trusting only the log's key (docs/uploader.md "Verify").

What is checked, in order (each a line of the report; a failure prints its evidence):

1. The latest checkpoint (``GET /log/checkpoint``) is signed by the key and names its origin
   (the key's name); so is every checkpoint the upload was handed (the receipts file).
2. Every chunk of this file: its leaf rebuilt from the file (the bet lines of its range as the
   server stores them, the upload's salt, its key) is at its index in the latest tree
   (``GET /log/proof/inclusion``); every bet of the file is in some chunk.
3. Every kept checkpoint is a prefix of the latest (``GET /log/proof/consistency``): the log
   never forked or lost a leaf since the server handed it.
4. The round (``GET /rounds/N``): its leaves from its opening to its close, read with
   ``GET /log/entries``, hash to the signed root of the draw's size (the tree to the left comes
   from an inclusion proof of the opening leaf); the opening names the round, its agencies and
   its number or seed commitment; the close counts the round's chunk leaves and bets and names
   the last; a random number is the seed's (its commitment) and the log's (the derivation).
5. The agency's winners: the file's bets whose number is the winning number, against the
   server's list (``GET /rounds/N/agencies/A/winners``).
"""

from __future__ import annotations

import collections

from client.http import ClientError, Rejected
from client.lines import MalformedFile, bet_blocks
from client.rows import stored_rows, winning_documents
from tlog import b64, draw, leaves, merkle, note
from tlog.checkpoint import Checkpoint, CheckpointError, open_checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from client.http import Server
    from client.lines import Block, FilePath

OK, FAILED, INCOMPLETE = 0, 1, 3  # exit codes
PAGE = 1000  # the most entries the server answers at once


class Report:
    """The checks made, in order: each (name, verdict, detail, evidence lines); verdict None: not checkable."""

    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []

    def add(self, name: str, ok: bool | None, detail: str, evidence: list[str] | None = None) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail, "evidence": evidence or []})

    @property
    def status(self) -> int:
        verdicts = [c["ok"] for c in self.checks]
        return FAILED if False in verdicts else INCOMPLETE if None in verdicts else OK

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            out.append(f"{'ok  ' if c['ok'] else 'FAIL' if c['ok'] is False else 'n/a '}  {c['detail']}")
            out += [f"      {line}" for line in c["evidence"]]
        failed = sum(1 for c in self.checks if c["ok"] is False)
        out.append(
            "verified: every check holds"
            if self.status == OK
            else f"FAILED: {failed} of {len(self.checks)} checks"
            if failed
            else "not verified yet: see the n/a lines"
        )
        return out


class Evidence(Exception):
    """A check that failed: its one-line reason and the evidence to print."""

    def __init__(self, detail: str, evidence: list[str]):
        super().__init__(detail)
        self.detail, self.evidence = detail, evidence


def _quoted(title: str, text: str) -> list[str]:
    return [title] + [f"  | {line}" for line in text.rstrip("\n").split("\n")]


def _proof(title: str, hashes: list[bytes]) -> list[str]:
    return [f"{title} ({len(hashes)} hashes):"] + [f"  {b64.encode(h)}" for h in hashes]


class NoLog(Exception):
    """The server keeps no log (an earlier release), or not the checkpoint asked for."""


class Log:
    """The server's log routes; every checkpoint opened with the trusted key before it is used."""

    def __init__(self, api: Server, key: note.Verifier):
        self.api, self.key = api, key
        self.signed: dict[int, tuple[Checkpoint, str]] = {}

    def open(self, text: str, where: str) -> Checkpoint:
        """The checkpoint in ``text`` if the key signed it for its origin; Evidence otherwise."""
        try:
            opened = open_checkpoint(text.encode("utf-8"), self.key, self.key.name)
        except (note.NoteError, CheckpointError) as error:
            raise Evidence(
                f"{where}: not a checkpoint of {self.key.name} signed by its key ({error})", _quoted(where, text)
            ) from None
        earlier = self.signed.get(opened.size)
        if earlier is not None and earlier[0].root != opened.root:  # the key signed two trees of one size
            raise Evidence(
                f"two checkpoints of size {opened.size} with different roots, both signed by the log's key: a fork",
                _quoted("one:", earlier[1]) + _quoted("the other:", text),
            )
        self.signed[opened.size] = (opened, text)
        return opened

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        where = "the latest checkpoint" if size is None else f"the checkpoint of size {size}"
        response = self.api.request(
            "GET", "/log/checkpoint", params=None if size is None else {"size": size}, ok=(200, 404)
        )
        if response.status_code == 404:
            raise NoLog(f"the server has no {where} (GET /log/checkpoint: 404)")
        opened = self.open(response.text, where)
        if size is not None and opened.size != size:
            raise Evidence(
                f"asked for the checkpoint of size {size}, got one of {opened.size}", _quoted(where, response.text)
            )
        return opened

    def hashes(self, path: str, **params: int) -> list[bytes]:
        answer = self.api.request("GET", path, params=params).json()
        return [b64.decode(h) for h in answer["hashes"]]

    def entries(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        while start < end:
            page = self.api.request("GET", "/log/entries", params={"start": start, "end": min(end, start + PAGE)})
            got = [b64.decode(e) for e in page.json()["entries"]]
            if not got:
                raise Evidence(f"the server answers no entry at index {start} of a tree it signed beyond it", [])
            out += got[: end - start]
            start += len(got)
        return out

    def consistent(self, old: Checkpoint, new: Checkpoint) -> None:
        """Evidence unless ``new`` extends ``old`` (both signed)."""
        if old.size > new.size:
            raise Evidence(
                f"the log shrank: a checkpoint of size {old.size} was handed before, the latest is of size {new.size}",
                _quoted("earlier:", self.signed[old.size][1]) + _quoted("latest:", self.signed[new.size][1]),
            )
        proof = [] if old.size in (0, new.size) else self.hashes("/log/proof/consistency", old=old.size, size=new.size)
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except merkle.ProofError as error:
            raise Evidence(
                f"the tree of {new.size} does not extend the tree of {old.size} signed before: "
                f"the log forked ({error})",
                _quoted(f"checkpoint of size {old.size}:", self.signed[old.size][1])
                + _quoted(f"checkpoint of size {new.size}:", self.signed[new.size][1])
                + _proof(f"consistency proof {old.size} -> {new.size}", proof),
            ) from None


class Chunk:
    """One chunk of the file in the log: bets [start, end), its key, salt and index; what was handed for it."""

    __slots__ = ("start", "end", "key", "salt", "index", "leaf", "checkpoint", "lines")

    def __init__(self, start: int, end: int, key: str, salt: str, index: int, leaf: str | None, checkpoint: str | None):
        self.start, self.end, self.key, self.salt, self.index = start, end, key, salt, index
        self.leaf, self.checkpoint = leaf, checkpoint  # from the receipt (None: learned from the server)
        self.lines = ""

    def name(self, path: FilePath) -> str:
        where = f"{path}:{self.lines or '?'}"
        return f"chunk {where} (bets {self.start}-{self.end - 1}, key {self.key}, log index {self.index})"


def range_bodies(
    path: FilePath, ranges: list[tuple[int, int]], blocks: list[Block] | None = None
) -> Iterator[tuple[int, bytes | None, str]]:
    """(i, the bet lines of ranges[i] as sent, "first-last" file lines), in one pass over the file;
    None for a range past the file's end. Ranges may overlap (a file sent twice)."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    taken = 0
    active: dict[int, list[Any]] = {}  # i: [bodies, first line, last line]
    base = 0
    for block in bet_blocks(path) if blocks is None else blocks:
        top = base + block.count
        while taken < len(order) and ranges[order[taken]][0] < top:
            active[order[taken]] = [[], None, None]
            taken += 1
        for i in list(active):
            start, end = ranges[i]
            a, b = max(start, base) - base, min(end, top) - base
            if a < b:
                state = active[i]
                state[0].append(block.body(a, b))
                state[1] = block.numbers[a] if state[1] is None else state[1]
                state[2] = block.numbers[b - 1]
            if end <= top:
                bodies, first, last = active.pop(i)
                yield i, b"".join(bodies), f"{first}-{last}"
        base = top
    for i in [*active, *order[taken:]]:
        yield i, None, ""


def left_border(index: int, size: int, proof: list[bytes]) -> list[bytes]:
    """From the inclusion proof of leaf ``index``: the hashes of the perfect subtrees that make up
    leaves [0, index), largest first (the proof's nodes folded in on the left, RFC 9162 §2.1.3.2)."""
    fn, sn, left = index, size - 1, []
    for node in proof:
        if fn & 1 or fn == sn:
            left.append(node)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if len(left) != bin(index).count("1"):
        raise merkle.ProofError(f"not an inclusion proof of leaf {index} in a tree of {size}")
    return left[::-1]


def root_with(border: list[bytes], start: int, leaf_hashes: list[bytes]) -> bytes:
    """The root of the tree whose leaves [0, start) hash to ``border`` and then ``leaf_hashes``."""
    widths = [1 << bit for bit in range(start.bit_length() - 1, -1, -1) if start >> bit & 1]
    stack = list(zip(border, widths, strict=True))
    for top in leaf_hashes:
        width = 1
        while stack and stack[-1][1] == width:
            top, width = merkle.node_hash(stack.pop()[0], top), width * 2
        stack.append((top, width))
    if not stack:
        return merkle.EMPTY_ROOT
    root = stack[-1][0]
    for node, _ in reversed(stack[:-1]):
        root = merkle.node_hash(node, root)
    return root


class Verifier:
    """One ``verify`` run: the options' agency, file and round, against the server behind ``api``."""

    def __init__(
        self,
        api: Server,
        agency: int,
        path: FilePath,
        round_id: int,
        log_key: str,
        receipts: str,
        upload_id: str | None = None,
    ):
        try:
            key = note.Verifier.from_key(log_key)
        except note.NoteError as error:
            raise ClientError(f"--log-key is not a verifier key (name+hexkeyid+base64): {error}") from None
        self.api, self.agency, self.path, self.round = api, agency, path, round_id
        self.receipts_path, self.upload_id = receipts, upload_id
        self.log, self.origin = Log(api, key), key.name
        self.report = Report()

    def check(self, name: str, run: Any) -> Any:
        """Run one check, which returns (its line, what it found) or raises Evidence; the failure
        is reported, and None returned."""
        try:
            detail, found = run()
        except Evidence as failed:
            self.report.add(name, False, failed.detail, failed.evidence)
            return None
        except NoLog as error:  # a size a receipt or the draw named must stay retrievable
            self.report.add(name, False, str(error))
            return None
        except (Rejected, merkle.ProofError, ValueError, KeyError, TypeError) as error:  # a malformed answer
            self.report.add(name, False, f"{name}: the server's answer does not hold ({type(error).__name__}: {error})")
            return None
        self.report.add(name, True, detail)
        return found

    def run(self) -> Report:
        from client.upload import scan

        scanned = scan(self.path)
        self.upload_id = self.upload_id or scanned.upload_id
        try:
            latest = self.log.checkpoint()
        except Evidence as failed:
            self.report.add("checkpoint", False, failed.detail, failed.evidence)
            return self.report
        except NoLog:
            self.report.add(
                "checkpoint", None, "this server keeps no log (no /log/checkpoint): nothing can be verified"
            )
            return self.report
        self.report.add("checkpoint", True, f"the latest checkpoint (size {latest.size}) is signed by {self.origin}")
        chunks = self.check("chunks", lambda: self.gather_chunks()) or []
        winners_here = self.check_chunks(chunks, latest, scanned)
        self.check("consistency", lambda: self.check_kept_checkpoints(chunks, latest))
        info = self.api.request("GET", f"/rounds/{self.round}", ok=(200, 404))
        if info.status_code == 404:
            self.report.add("round", False, f"round {self.round} does not exist on the server")
            return self.report
        round_info = info.json()
        if "log" not in round_info:
            self.report.add("round", None, "this server keeps no log: its rounds cannot be verified")
            return self.report
        if round_info.get("draw") is None:
            self.report.add("round", None, f"round {self.round} is not drawn yet: rerun verify after the draw")
            return self.report
        round_chunks = self.check("round", lambda: self.check_round(round_info, latest))
        if round_chunks is not None and winners_here is not None:
            self.check("winners", lambda: self.check_winners(round_info, chunks, round_chunks, winners_here))
        else:
            self.report.add("winners", None, "the winners are not checked: a check they rest on failed")
        return self.report

    # -- the file's chunks ----------------------------------------------------------------------

    def gather_chunks(self) -> tuple[str, list[Chunk]]:
        """The chunks of the file in this round: from the receipts file, and from the server's
        upload state for any the receipts lack (a crash between the answer and the write)."""
        from client.receipts import read

        chunks: dict[tuple[int, int, str], Chunk] = {}
        for r in read(self.receipts_path):
            if r.get("kind") != "chunk" or r.get("agency") != self.agency or not self._this_round(r):
                continue
            chunk = Chunk(r["start"], r["end"], r["key"], r["salt"], r["index"], r["leaf"], r["checkpoint"])
            chunks[chunk.start, chunk.end, chunk.key] = chunk
        kept = len(chunks)
        response = self.api.request(
            "GET", f"/rounds/{self.round}/agencies/{self.agency}/uploads/{self.upload_id}", ok=(200, 404)
        )
        spans = response.json().get("spans", []) if response.status_code == 200 else []
        for s in spans:  # a disagreement with a receipt is reported; the receipt's chunk is checked
            key = f"{self.upload_id}:{s['start']}-{s['end']}"
            known = chunks.get((s["start"], s["end"], key))
            if known is None and s.get("log_index") is not None:
                chunks[s["start"], s["end"], key] = Chunk(
                    s["start"], s["end"], key, s["salt"], s["log_index"], None, None
                )
            elif known is not None and (known.index, known.salt) != (s.get("log_index"), s.get("salt")):
                self.report.add(
                    "upload state",
                    False,
                    f"the server's upload state puts bets {s['start']}-{s['end'] - 1} at log index "
                    f"{s.get('log_index')} (salt {s.get('salt')}); their receipt says {known.index} "
                    f"(salt {known.salt})",
                )
        if not chunks:
            raise Evidence(
                f"no chunk of {self.path} in round {self.round}: no receipt in {self.receipts_path}, "
                f"and the server's upload {self.upload_id} holds none (another upload id? --upload-id)",
                [],
            )
        learned = len(chunks) - kept
        more = f", {learned} learned from the server's upload state (no receipt)" if learned else ""
        found = sorted(chunks.values(), key=lambda c: (c.start, c.index))
        return (
            f"{len(found)} chunks of {self.path} in round {self.round}: {kept} from {self.receipts_path}{more}",
            found,
        )

    def _this_round(self, record: dict[str, Any]) -> bool:
        if record.get("round") is not None:
            return bool(record["round"] == self.round)
        try:  # a server without rounds in the URL: the leaf names the round
            leaf = leaves.parse_leaf(b64.decode(record.get("leaf") or ""))
        except (ValueError, leaves.LeafError):
            return False
        return isinstance(leaf, leaves.ChunkStored) and leaf.round == self.round

    def check_chunks(self, chunks: list[Chunk], latest: Checkpoint, scanned: Any) -> list[str] | None:
        """Each chunk's leaf, rebuilt from the file, is in the latest tree; the file's winners on the
        way (None when a chunk failed: its bets are not the file's)."""
        if not chunks:
            return None
        winners_number = self._winning_number_hint()
        documents: list[str] = []
        failures = 0
        covered = []
        ranges = [(c.start, c.end) for c in chunks]
        try:
            bodies = list(range_bodies(self.path, ranges, scanned.blocks))
        except MalformedFile as error:
            raise ClientError(str(error)) from None
        for i, body, lines in bodies:
            chunk = chunks[i]
            chunk.lines = lines
            try:
                rows = self.check_chunk(chunk, body, latest)
            except Evidence as failed:
                failures += 1
                self.report.add("chunk", False, failed.detail, failed.evidence)
                continue
            covered.append((chunk.start, chunk.end))
            if winners_number is not None:
                documents += winning_documents(rows, winners_number)
        if not failures:
            first, last = min(c.start for c in chunks), max(c.end for c in chunks)
            self.report.add(
                "chunks",
                True,
                f"{len(chunks)} chunks of {self.path} (bets {first}-{last - 1}) are in the log's tree of {latest.size}",
            )
        gap = self._first_gap(covered, scanned.bets)
        if gap is not None:
            failures += 1
            self.report.add("coverage", False, gap)
        return None if failures else documents

    def check_chunk(self, chunk: Chunk, body: bytes | None, latest: Checkpoint) -> bytes:
        name = chunk.name(self.path)
        if chunk.checkpoint is not None:
            handed = self.log.open(chunk.checkpoint, f"the checkpoint handed for {name}")
            if chunk.index >= handed.size:
                raise Evidence(
                    f"{name}: its receipt's checkpoint (size {handed.size}) does not hold index {chunk.index}", []
                )
        if body is None:
            raise Evidence(f"{name}: the file has no such bets any more (it changed since the upload)", [])
        try:
            salt = b64.decode(chunk.salt)
            rows = stored_rows(self.agency, body)
            digest = leaves.chunk_digest(salt, rows)
            expected = leaves.ChunkStored(self.round, self.agency, chunk.key, chunk.end - chunk.start, digest).bytes()
        except (ValueError, leaves.LeafError) as error:
            raise Evidence(f"{name}: cannot rebuild its leaf ({error})", []) from None
        if chunk.leaf is not None and chunk.leaf != b64.encode(expected):
            raise Evidence(
                f"{name}: the leaf in its receipt is not the file's (a bet of these lines changed since the upload, "
                "or the server acknowledged other bets)",
                _quoted("receipt's leaf:", b64.decode(chunk.leaf).decode("ascii", "replace"))
                + _quoted("the file's leaf:", expected.decode("ascii")),
            )
        proof: list[bytes] = []
        try:
            proof = self.log.hashes("/log/proof/inclusion", index=chunk.index, size=latest.size)
            merkle.verify_inclusion(chunk.index, latest.size, merkle.leaf_hash(expected), proof, latest.root)
        except (merkle.ProofError, Rejected) as error:
            raise Evidence(
                f"{name}: its leaf, rebuilt from the file, is not at index {chunk.index} of the log ({error})",
                _quoted("the file's leaf:", expected.decode("ascii"))
                + self._leaf_at(chunk.index, latest.size)
                + _quoted(f"latest checkpoint (size {latest.size}):", self.log.signed[latest.size][1])
                + _proof(f"inclusion proof of leaf {chunk.index} in the tree of {latest.size}", proof),
            ) from None
        return rows

    def _leaf_at(self, index: int, size: int) -> list[str]:
        if index >= size:
            return [f"the log's tree of {size} has no leaf {index}"]
        try:
            leaf = self.log.entries(index, index + 1)[0]
        except (Evidence, Rejected, ClientError, ValueError, KeyError) as error:
            return [f"the log's leaf {index}: not served ({error})"]
        return _quoted(f"the log's leaf {index}:", leaf.decode("ascii", "replace"))

    def _first_gap(self, covered: list[tuple[int, int]], bets: int) -> str | None:
        at = 0
        for start, end in sorted(covered):
            if start > at:
                break
            at = max(at, end)
        if at >= bets:
            return None
        from client.resume import check_ranges

        end = min((s for s, _ in covered if s > at), default=bets)
        check = check_ranges(self.path, [(at, end)])[0][0]
        return (
            f"bets {at}-{end - 1} of {self.path} (lines {check.first_line}-{check.last_line}) are in no chunk "
            "the log holds for this round: not uploaded, or their chunk failed above"
        )

    def _winning_number_hint(self) -> int | None:
        """The round's announced winning number (checked in check_round), to collect winners on the way."""
        try:
            info = self.api.request("GET", f"/rounds/{self.round}", ok=(200, 404))
            drawn = info.json().get("draw") if info.status_code == 200 else None
        except (ClientError, ValueError):
            return None
        return int(drawn["winning_number"]) if isinstance(drawn, dict) else None

    def check_kept_checkpoints(self, chunks: list[Chunk], latest: Checkpoint) -> tuple[str, None]:
        sizes = sorted({size for size in self.log.signed if size != latest.size})
        if not any(c.checkpoint for c in chunks):
            return (
                "no checkpoint was kept during the upload (no receipts): consistency is checked from the draw's",
                None,
            )
        for size in sizes:
            self.log.consistent(self.log.signed[size][0], latest)
        return f"the latest tree extends each of the {len(sizes)} checkpoints handed during the upload", None

    # -- the round --------------------------------------------------------------------------------

    def check_round(self, info: dict[str, Any], latest: Checkpoint) -> tuple[str, list[leaves.ChunkStored]]:
        d, where = info["draw"], info["log"]
        size, opened, closed = int(d["size"]), int(where["opened"]), where["closed"]
        if closed != size - 1:
            raise Evidence(f"round {self.round}: its close leaf is at {closed}, the draw's tree has {size} leaves", [])
        at_draw = self.log.checkpoint(size)
        if b64.decode(d["root"]) != at_draw.root:
            raise Evidence(
                f"round {self.round}: the draw's root is not the signed root of the tree of {size}",
                [f"draw root: {d['root']}"] + _quoted(f"checkpoint of size {size}:", self.log.signed[size][1]),
            )
        self.log.consistent(at_draw, latest)
        span = self.log.entries(opened, size)
        border = left_border(opened, size, self.log.hashes("/log/proof/inclusion", index=opened, size=size))
        if root_with(border, opened, [merkle.leaf_hash(leaf) for leaf in span]) != at_draw.root:
            raise Evidence(
                f"round {self.round}: the log's entries {opened}-{size - 1} "
                f"do not hash to the signed root of size {size}",
                _quoted(f"checkpoint of size {size}:", self.log.signed[size][1]),
            )
        parsed = []
        for index, data in enumerate(span, opened):
            try:
                parsed.append(leaves.parse_leaf(data))
            except leaves.LeafError as error:
                raise Evidence(
                    f"log entry {index} is not a leaf ({error})",
                    _quoted(f"entry {index}:", data.decode("ascii", "replace")),
                ) from None
        opening, close, middle = parsed[0], parsed[-1], parsed[1:-1]
        chunk_leaves = [(i, leaf) for i, leaf in enumerate(middle, opened + 1) if isinstance(leaf, leaves.ChunkStored)]
        odd = [
            i
            for i, leaf in enumerate(middle, opened + 1)
            if not isinstance(leaf, leaves.ChunkStored) or leaf.round != self.round
        ]
        if not isinstance(opening, leaves.RoundOpened) or opening.round != self.round:
            raise Evidence(
                f"log entry {opened} is not round {self.round}'s opening", _quoted(f"entry {opened}:", span[0].decode())
            )
        if not isinstance(close, leaves.RoundClosed) or close.round != self.round:
            raise Evidence(
                f"log entry {closed} is not round {self.round}'s close", _quoted(f"entry {closed}:", span[-1].decode())
            )
        if odd:
            raise Evidence(
                f"log entry {odd[0]}, inside round {self.round}, is not one of its chunks",
                _quoted(f"entry {odd[0]}:", span[odd[0] - opened].decode()),
            )
        counted = leaves.RoundClosed(
            self.round,
            len(chunk_leaves),
            sum(leaf.bets for _, leaf in chunk_leaves),
            chunk_leaves[-1][0] if chunk_leaves else None,
        )
        if close != counted:
            raise Evidence(
                f"round {self.round}'s close leaf does not count its chunk leaves",
                _quoted(f"entry {closed}:", close.bytes().decode())
                + _quoted("counted from the log:", counted.bytes().decode()),
            )
        if opening.agencies != info["agencies"]:
            raise Evidence(
                f"round {self.round} has {info['agencies']} agencies; its opening leaf says {opening.agencies}", []
            )
        number = int(d["winning_number"])
        if opening.winning_number is not None:
            if opening.winning_number != number or d.get("seed") is not None:
                raise Evidence(
                    f"round {self.round} opened with the fixed number {opening.winning_number}; the draw says {number}",
                    [],
                )
            how = f"the fixed number {number} it opened with (only its bets are provable, not its number)"
        else:
            how = self._check_random(opening, d, size, at_draw.root, number)
        return (
            f"round {self.round}: entries {opened}-{closed} (opened, {close.chunks} chunks, {close.bets} bets, closed) "
            f"hash to the signed root of size {size}; its number is {how}"
        ), [leaf for _, leaf in chunk_leaves]

    def _check_random(self, opening: leaves.RoundOpened, d: dict[str, Any], size: int, root: bytes, number: int) -> str:
        if d.get("seed") is None:
            raise Evidence(f"round {self.round} opened with a random number but its draw publishes no seed", [])
        seed = b64.decode(d["seed"])
        if draw.seed_commitment(seed) != opening.seed_commitment:
            raise Evidence(
                f"round {self.round}: the published seed is not the one committed to when it opened",
                [
                    f"seed: {d['seed']}",
                    f"its commitment: {b64.encode(draw.seed_commitment(seed))}",
                    f"committed (opening leaf): {b64.encode(opening.seed_commitment or b'')}",
                ],
            )
        derived = draw.winning_number(self.origin, self.round, size, root, seed)
        if derived != number:
            raise Evidence(
                f"round {self.round}: the number {number} does not follow "
                f"from the seed and the log (it gives {derived})",
                [f"origin {self.origin}, round {self.round}, size {size}, root {b64.encode(root)}, seed {d['seed']}"],
            )
        return f"random: {number}, derived from the committed seed and the root of size {size}"

    def check_winners(
        self, info: dict[str, Any], chunks: list[Chunk], round_chunks: list[leaves.ChunkStored], own: list[str]
    ) -> tuple[str, None]:
        answer = self.api.request("GET", f"/rounds/{self.round}/agencies/{self.agency}/winners", ok=(200,))
        theirs: list[str] = answer.json()["winners"]
        mine = {c.key for c in chunks}
        others = [leaf for leaf in round_chunks if leaf.agency == self.agency and leaf.key not in mine]
        missing = collections.Counter(own) - collections.Counter(theirs)
        extra = collections.Counter(theirs) - collections.Counter(own)
        if missing or (extra and not others):
            raise Evidence(
                f"agency {self.agency}'s winners are not the file's: the server's list "
                + (f"lacks {sorted(missing.elements())}" if missing else "")
                + (" and " if missing and extra else "")
                + (f"has {sorted(extra.elements())} more" if extra else ""),
                [f"the file's winners ({len(own)}): {sorted(own)}", f"the server's ({len(theirs)}): {sorted(theirs)}"],
            )
        tail = f"; {len(others)} chunks of this agency's other files were not checked" if others else ""
        return (
            f"agency {self.agency}'s {len(own)} winners are the file's bets on {info['draw']['winning_number']}{tail}",
            None,
        )
