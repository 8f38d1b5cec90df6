"""An in-process lottery server that follows issue 23's wire contract (/tmp contract, docs/transparency.md),
for the uploader's receipts and ``verify``: one round, a real ``tlog.merkle.Tree``, real signed
checkpoints with a test key, the chunk's digest over the rows as the real server stores them
(app.ingest.parse_csv), the committed draw. Served through ``httpx.MockTransport``.

Its ``tamper_*`` methods make the lies ``verify`` must catch: a leaf rewritten or removed (the
tree rebuilt and re-signed by the same key: a fork), a bad signature, another origin, a draw or
a seed that do not follow, a winner dropped.
"""

from __future__ import annotations

import hashlib
import threading
from urllib.parse import parse_qs

import httpx

from app.ingest import parse_csv
from tlog import b64, draw, leaves, merkle
from tlog.checkpoint import Checkpoint, sign_checkpoint
from tlog.note import Signer

ORIGIN = "lottery.test/log"


def log_signer(name: str = ORIGIN, label: bytes = b"fake log key") -> Signer:
    return Signer.from_seed(name, hashlib.sha256(label).digest())


class FakeLottery:
    def __init__(self, agencies: int = 2, winning_number: int | None = None, signer: Signer | None = None):
        self.signer = signer or log_signer()
        self.origin = self.signer.name  # the checkpoints' origin line (a test may make it another)
        self.agencies, self.fixed = agencies, winning_number
        self.seed = hashlib.sha256(b"fake round seed").digest()
        self.leaves: list[bytes] = []
        self.tree = merkle.Tree()
        self.chunks: dict[str, dict] = {}  # by Idempotency-Key
        self.done: set[int] = set()
        self.drawn: dict | None = None
        self.winners: dict[int, list[str]] = {}
        self.bad_signature = False
        self.requests: list[str] = []
        self._lock = threading.Lock()
        opened = leaves.RoundOpened(
            1, agencies, winning_number, None if winning_number is not None else draw.seed_commitment(self.seed)
        )
        self.opened = self._append(opened.bytes())
        self.closed: int | None = None

    # -- the log ----------------------------------------------------------------------------------

    def _append(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        return self.tree.append(merkle.leaf_hash(leaf))

    def checkpoint(self, size: int | None = None) -> str:
        size = len(self.tree) if size is None else size
        signed = sign_checkpoint(Checkpoint(self.origin, size, self.tree.root(size)), self.signer).decode()
        if self.bad_signature:  # one bit of the signature flipped (its key id kept)
            head, sig = signed.rsplit(" ", 1)
            raw = bytearray(b64.decode(sig.strip()))
            raw[10] ^= 1
            signed = f"{head} {b64.encode(bytes(raw))}\n"
        return signed

    # -- the round --------------------------------------------------------------------------------

    def _draw(self) -> None:
        chunk_indexes = [c["index"] for c in self.chunks.values()]
        close = leaves.RoundClosed(
            1, len(chunk_indexes), sum(c["bets"] for c in self.chunks.values()), max(chunk_indexes, default=None)
        )
        self.closed = self._append(close.bytes())
        size = len(self.tree)
        number = (
            self.fixed
            if self.fixed is not None
            else draw.winning_number(self.origin, 1, size, self.tree.root(), self.seed)
        )
        self.drawn = {
            "seed": None if self.fixed is not None else b64.encode(self.seed),
            "size": size,
            "root": b64.encode(self.tree.root()),
            "winning_number": number,
        }
        self.winners = {}
        for chunk in sorted(self.chunks.values(), key=lambda c: c["index"]):
            for row in chunk["payload"].decode().splitlines():
                fields = row.split(",")
                if int(fields[-1]) == number:
                    self.winners.setdefault(chunk["agency"], []).append(fields[3])

    def info(self) -> dict:
        answer = {
            "round": 1,
            "state": "open" if self.drawn is None else "drawn",
            "agencies": self.agencies,
            "winning_number": self.fixed,
            "done_count": len(self.done),
            "bets": sum(c["bets"] for c in self.chunks.values()),
            "winners": None,
            "opened_at": "2026-01-01T00:00:00Z",
            "drawn_at": None,
            "log": {"opened": self.opened, "closed": self.closed},
            "draw": self.drawn,
        }
        if self.fixed is None:
            answer["seed_commitment"] = b64.encode(draw.seed_commitment(self.seed))
        return answer

    # -- tampering --------------------------------------------------------------------------------

    def _rebuild(self, new_leaves: list[bytes]) -> None:
        """Another history, signed by the same key, the round closed and drawn again from it (the
        most coherent lie the server can tell)."""
        drawn = self.drawn is not None
        if drawn:
            new_leaves = new_leaves[:-1]  # the close leaf is made again
        self.leaves, self.tree = [], merkle.Tree()
        for leaf in new_leaves:
            self._append(leaf)
        at = {leaf: i for i, leaf in enumerate(self.leaves)}
        self.chunks = {k: {**c, "index": at[c["leaf"]]} for k, c in self.chunks.items() if c["leaf"] in at}
        if drawn:
            self._draw()

    def tamper_rewrite(self, index: int, leaf: bytes) -> None:
        for chunk in self.chunks.values():
            if chunk["index"] == index:
                chunk["leaf"] = leaf
        self._rebuild([leaf if i == index else old for i, old in enumerate(self.leaves)])

    def tamper_remove(self, index: int) -> None:
        self._rebuild([old for i, old in enumerate(self.leaves) if i != index])

    def chunk_of(self, agency: int) -> dict:
        return next(c for c in sorted(self.chunks.values(), key=lambda c: c["index"]) if c["agency"] == agency)

    # -- HTTP ---------------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:  # the uploader's sender threads call in at once: one request at a time
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        parts = request.url.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        if parts[0] == "log":
            return self._proof(parts[2], query) if parts[1] == "proof" else self._log(parts[1], query)
        if parts[:2] == ["rounds", "1"]:
            parts = parts[2:]
            if not parts:
                return httpx.Response(200, json=self.info())
        elif parts == ["rounds"]:
            return httpx.Response(200, json={"rounds": [self.info()]})
        elif parts[0] == "rounds":
            return httpx.Response(404, json={"title": "Not Found", "detail": "no such round"})
        if parts == ["status"]:
            return httpx.Response(200, json={"done": sorted(self.done), "expected": self.agencies})
        if parts[0] == "agencies":
            return self._agency(request, int(parts[1]), parts[2:])
        return httpx.Response(404, json={"title": "Not Found"})

    def _log(self, what: str, q: dict[str, str]) -> httpx.Response:
        size = len(self.tree)
        if what == "vkey":
            return httpx.Response(200, text=self.signer.verifier().vkey() + "\n")
        if what == "checkpoint":
            wanted = int(q.get("size", size))
            if wanted > size:
                return httpx.Response(404, json={"title": "Not Found"})
            return httpx.Response(200, text=self.checkpoint(wanted))
        if what == "entries":
            start, end = int(q["start"]), min(int(q["end"]), size, int(q["start"]) + 1000)
            return httpx.Response(200, json={"entries": [b64.encode(x) for x in self.leaves[start:end]]})
        return httpx.Response(404, json={"title": "Not Found"})

    def _proof(self, kind: str, q: dict[str, str]) -> httpx.Response:
        size = int(q["size"])
        if size > len(self.tree):
            return httpx.Response(400, json={"title": "Bad Request", "detail": "beyond the log"})
        hashes = (
            self.tree.inclusion_proof(int(q["index"]), size)
            if kind == "inclusion"
            else self.tree.consistency_proof(int(q["old"]), size)
        )
        return httpx.Response(200, json={"hashes": [b64.encode(h) for h in hashes]})

    def _agency(self, request: httpx.Request, agency: int, parts: list[str]) -> httpx.Response:
        if parts == ["bets"] and request.method == "POST":
            return self._bets(request, agency)
        if parts == ["done"]:
            self.done.add(agency)
            if len(self.done) == self.agencies and self.drawn is None:
                self._draw()
            return httpx.Response(200, json={"done": len(self.done), "expected": self.agencies})
        if parts == ["winners"]:
            if self.drawn is None:
                return httpx.Response(425, json={"title": "Too Early"})
            return httpx.Response(200, json={"winners": list(self.winners.get(agency, []))})
        if parts == ["uploads"]:
            ids: dict[str, int] = {}
            for c in self.chunks.values():
                if c["agency"] == agency:
                    ids[c["upload_id"]] = ids.get(c["upload_id"], 0) + c["bets"]
            return httpx.Response(
                200, json={"uploads": [{"upload_id": u, "bets": b, "chunks": 1} for u, b in ids.items()]}
            )
        if len(parts) == 2 and parts[0] == "uploads":
            spans = [
                {
                    "start": c["start"],
                    "end": c["end"],
                    "digest": c["body_digest"],
                    "log_index": c["index"],
                    "salt": c["salt"],
                }
                for c in sorted(self.chunks.values(), key=lambda c: c["start"])
                if c["agency"] == agency and c["upload_id"] == parts[1]
            ]
            committed = [[s["start"], s["end"]] for s in spans]
            return httpx.Response(
                200,
                json={
                    "upload_id": parts[1],
                    "committed": committed,
                    "bets": sum(e - s for s, e in committed),
                    "spans": spans,
                },
            )
        return httpx.Response(404, json={"title": "Not Found"})

    def _bets(self, request: httpx.Request, agency: int) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key in self.chunks:
            return httpx.Response(200, json=self._receipt(self.chunks[key]))
        if self.drawn is not None:
            return httpx.Response(409, json={"title": "Conflict", "detail": "the draw has already happened"})
        salt = request.headers.get("Lottery-Salt")
        parsed = parse_csv(request.content, agency, 100_000, only_bets=True)
        digest = leaves.chunk_digest(b64.decode(salt), parsed.payload)
        leaf = leaves.ChunkStored(1, agency, key, parsed.count, digest).bytes()
        start = int(request.headers["Upload-Offset"])
        chunk = {
            "agency": agency,
            "upload_id": request.headers["Upload-Id"],
            "start": start,
            "end": start + parsed.count,
            "bets": parsed.count,
            "payload": parsed.payload,
            "body_digest": hashlib.sha256(request.content).hexdigest(),
            "salt": salt,
            "leaf": leaf,
            "index": self._append(leaf),
        }
        self.chunks[key] = chunk
        return httpx.Response(201, json=self._receipt(chunk))

    def _receipt(self, chunk: dict) -> dict:
        size = len(self.tree)
        return {
            "stored": chunk["bets"],
            "log": {
                "index": chunk["index"],
                "size": size,
                "leaf": b64.encode(chunk["leaf"]),
                "salt": chunk["salt"],
                "checkpoint": self.checkpoint(size),
            },
        }

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)
