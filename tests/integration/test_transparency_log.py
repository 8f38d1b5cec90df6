"""The transparency log on the files backend, on real gunicorn with several workers (issue 23):
receipts that verify, checkpoints that agree, the committed random draw, crash recovery, the
start-up check, and every /log route's answers and errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from app.domain import encode_rows
from app.store.files_log import SLOT
from devtools.server import Server
from tests.postgres_db import fresh_database
from tests.support.server import refused_start
from tlog import b64, checkpoint, draw, keyfile, leaves, merkle, note

ORIGIN = "lottery.local/log"


def _rows(agency: int, count: int, tag: str, number: int = 1) -> list[tuple[int, str, str, str, str, int]]:
    return [(agency, f"Ana{tag}", "Paz", str(10_000_000 + i), "1990-05-01", number) for i in range(count)]


def _csv(rows: list[tuple[int, str, str, str, str, int]]) -> bytes:
    return b"".join(f"{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}\n".encode() for r in rows)


def _post(client: httpx.Client, agency: int, rows, key: str | None, salt: bytes | None = None, **headers: str):
    if key is not None:
        headers["Idempotency-Key"] = key
    if salt is not None:
        headers["Lottery-Salt"] = b64.encode(salt)
    return client.post(f"/agencies/{agency}/bets", content=_csv(rows), headers={"Content-Type": "text/csv", **headers})


def _verifier(client: httpx.Client) -> note.Verifier:
    answer = client.get("/log/vkey")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return note.Verifier.from_key(answer.text.removesuffix("\n"))


def _check_receipt(client: httpx.Client, verifier: note.Verifier, receipt: dict, rows, key: str | None) -> int:
    """The receipt's leaf is the chunk (rows as stored, its salt), in its signed checkpoint: its size."""
    log = receipt["log"]
    head = checkpoint.open_checkpoint(log["checkpoint"].encode(), verifier, ORIGIN)
    assert head.size == log["size"] > log["index"]
    leaf = leaves.parse_leaf(b64.decode(log["leaf"]))
    assert isinstance(leaf, leaves.ChunkStored)
    assert leaf.digest == leaves.chunk_digest(b64.decode(log["salt"]), encode_rows(rows))
    assert (leaf.agency, leaf.bets) == (rows[0][0], len(rows))
    assert leaf.key == key if key is not None else leaf.key.startswith("auto-")
    proof = client.get("/log/proof/inclusion", params={"index": log["index"], "size": head.size}).json()["hashes"]
    merkle.verify_inclusion(
        log["index"], head.size, merkle.leaf_hash(leaf.bytes()), [b64.decode(h) for h in proof], head.root
    )
    return head.size


def _consistent(client: httpx.Client, verifier: note.Verifier, sizes: set[int]) -> None:
    """Every checkpoint handed out is retrievable and extends the one before it."""
    heads = []
    for size in sorted(sizes):
        answer = client.get("/log/checkpoint", params={"size": size})
        assert answer.status_code == 200, answer.text
        heads.append(checkpoint.open_checkpoint(answer.content, verifier, ORIGIN))
    latest = checkpoint.open_checkpoint(client.get("/log/checkpoint").content, verifier, ORIGIN)
    for old in heads:
        proof = client.get("/log/proof/consistency", params={"old": old.size, "size": latest.size}).json()["hashes"]
        merkle.verify_consistency(old.size, latest.size, old.root, latest.root, [b64.decode(h) for h in proof])


@pytest.fixture(params=["files", "postgres"])
def server(request, tmp_path: Path):
    """Three workers on the files backend, or on PostgreSQL (a fresh database, the key in the data dir)."""
    if request.param == "files":
        with Server(tmp_path / "data", workers=3, agencies=3) as running:
            yield running
    else:
        with fresh_database("lottery_tlog") as url:
            with Server(tmp_path / "data", workers=3, agencies=3, env={"LOTTERY_DATABASE_URL": url}) as running:
                yield running


def test_every_chunks_receipt_verifies_and_every_checkpoint_extends_the_last(server: Server) -> None:
    receipts: list[tuple[dict, list, str | None]] = []
    guard = threading.Lock()

    def agency(number: int) -> None:
        salt = leaves.new_salt()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(12):
                rows = _rows(number, 1 + i % 4, f"{number}x{i}")
                key = None if i % 3 == 2 else f"a{number}-c{i}"
                answer = _post(client, number, rows, key, salt if i % 2 else None)
                assert answer.status_code == 201, answer.text
                with guard:
                    receipts.append((answer.json(), rows, key))

    threads = [threading.Thread(target=agency, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        verifier = _verifier(client)
        sizes = {_check_receipt(client, verifier, receipt, rows, key) for receipt, rows, key in receipts}
        assert sorted(r["log"]["index"] for r, _, _ in receipts) == list(range(1, 37))  # leaf 0: round 1 opened
        _consistent(client, verifier, sizes)
        # A replay: the same leaf, index and salt as the first answer, whatever salt it sends now.
        first, rows, key = next(r for r in receipts if r[2] is not None)
        again = _post(client, rows[0][0], rows, key, leaves.new_salt())
        assert again.status_code == 200
        assert {k: again.json()["log"][k] for k in ("index", "leaf", "salt")} == {
            k: first["log"][k] for k in ("index", "leaf", "salt")
        }
        _check_receipt(client, verifier, again.json(), rows, key)


def test_upload_state_shows_each_spans_leaf_and_salt(server: Server) -> None:
    salt = leaves.new_salt()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        rows = _rows(1, 3, "u")
        answer = _post(client, 1, rows, "u-0", salt, **{"Upload-Id": "up1", "Upload-Offset": "0"})
        assert answer.status_code == 201
        spans = client.get("/agencies/1/uploads/up1").json()["spans"]
        assert [(s["start"], s["end"], s["log_index"], s["salt"]) for s in spans] == [
            (0, 3, answer.json()["log"]["index"], b64.encode(salt))
        ]


def test_a_bad_salt_is_400(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for bad in (
            "abc",
            b64.encode(bytes(31)),
            b64.encode(bytes(33)),
            "A" * 42 + "B=",
        ):  # the last: non-canonical padding bits
            answer = client.post(
                "/agencies/1/bets",
                content=_csv(_rows(1, 1, "s")),
                headers={"Content-Type": "text/csv", "Lottery-Salt": bad},
            )
            assert answer.status_code == 400, bad
            assert answer.headers["content-type"] == "application/problem+json"
            assert "Lottery-Salt" in answer.json()["detail"]
        assert client.get("/status").json()["bets"] == 0


def test_a_random_rounds_number_is_derived_from_the_committed_seed_and_the_log(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for agency in (1, 2, 3):
            assert client.post(f"/agencies/{agency}/done").status_code == 200
        first = client.get("/rounds/1").json()
        assert first["draw"]["seed"] is None and first["seed_commitment"] is None
        assert first["draw"]["winning_number"] == first["winning_number"]
        opened = client.post("/rounds", json={"agencies": 2, "winning_number": "random"})
        assert opened.status_code == 201, opened.text
        before = client.get("/rounds/2").json()
        commitment = b64.decode(before["seed_commitment"])
        assert before["draw"] is None and before["log"]["closed"] is None
        opened_leaf = leaves.parse_leaf(
            b64.decode(
                client.get(
                    "/log/entries", params={"start": before["log"]["opened"], "end": before["log"]["opened"] + 1}
                ).json()["entries"][0]
            )  # noqa: E501
        )
        assert opened_leaf == leaves.RoundOpened(2, 2, None, commitment)
        for agency in (1, 2):
            assert _post(client, agency, _rows(agency, 2, "r"), f"r{agency}").status_code == 201
            assert client.post(f"/agencies/{agency}/done").status_code == 200
        after = client.get("/rounds/2").json()
        made = after["draw"]
        seed, root = b64.decode(made["seed"]), b64.decode(made["root"])
        assert draw.seed_commitment(seed) == commitment
        assert made["size"] == after["log"]["closed"] + 1
        assert (
            made["winning_number"]
            == after["winning_number"]
            == draw.winning_number(ORIGIN, 2, made["size"], root, seed)
        )
        verifier = _verifier(client)
        signed = checkpoint.open_checkpoint(
            client.get("/log/checkpoint", params={"size": made["size"]}).content, verifier, ORIGIN
        )
        assert signed.root == root
        closed_leaf = b64.decode(
            client.get("/log/entries", params={"start": made["size"] - 1, "end": made["size"]}).json()["entries"][0]
        )  # noqa: E501
        assert leaves.parse_leaf(closed_leaf) == leaves.RoundClosed(2, 2, 4, made["size"] - 2)


def test_every_log_routes_answers_and_errors(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(3):
            assert _post(client, 1, _rows(1, 1, f"e{i}"), f"e{i}").status_code == 201
        verifier = _verifier(client)
        latest = checkpoint.open_checkpoint(client.get("/log/checkpoint").content, verifier, ORIGIN)
        assert latest.size == 4
        entries = client.get("/log/entries", params={"start": 0, "end": 4}).json()["entries"]
        assert merkle.root_of(4, [merkle.leaf_hash(b64.decode(e)) for e in entries]) == latest.root
        assert len(client.get("/log/entries", params={"start": 1, "end": 3}).json()["entries"]) == 2
        problems = {
            ("/log/checkpoint", (("size", 5),)): 400,
            ("/log/checkpoint", (("size", 0),)): 404,  # the empty tree: never signed
            ("/log/entries", (("start", 0), ("end", 5))): 400,
            ("/log/entries", (("start", 2), ("end", 2))): 400,
            ("/log/proof/inclusion", (("index", 4), ("size", 4))): 400,
            ("/log/proof/inclusion", (("index", 0), ("size", 5))): 400,
            ("/log/proof/consistency", (("old", 5), ("size", 4))): 400,
            ("/log/proof/consistency", (("old", 1), ("size", 5))): 400,
            ("/log/entries", (("start", -1), ("end", 2))): 422,
            ("/log/proof/inclusion", (("index", "x"), ("size", 2))): 422,
        }
        signed_sizes = {1, 2, 3, 4}  # one checkpoint a commit: round 1's opening, then each chunk's
        for (path, params), status in problems.items():
            if path == "/log/checkpoint" and dict(params)["size"] in signed_sizes:
                continue  # a size that was signed answers 200 (below)
            answer = client.get(path, params=dict(params))
            assert answer.status_code == status, (path, params, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        for size in signed_sizes:
            assert (
                checkpoint.open_checkpoint(
                    client.get("/log/checkpoint", params={"size": size}).content, verifier, ORIGIN
                ).size
                == size
            )
        assert client.get("/log/proof/consistency", params={"old": 4, "size": 4}).json() == {"hashes": []}


def test_log_routes_take_any_agencys_or_the_operators_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"1": "t" * 32, "operator": "o" * 32}))
    tokens.chmod(0o600)
    with Server(tmp_path / "data", workers=2, agencies=1, env={"LOTTERY_TOKENS_FILE": str(tokens)}) as server:
        for route in ("/log/vkey", "/log/checkpoint", "/log/entries?start=0&end=1"):
            assert httpx.get(server.url + route).status_code == 401
            assert httpx.get(server.url + route, headers={"Authorization": "Bearer wrong"}).status_code == 401
            for token in ("t" * 32, "o" * 32):
                assert httpx.get(server.url + route, headers={"Authorization": f"Bearer {token}"}).status_code == 200


# -- crashes and the start-up check ----------------------------------------------------------


def _round_1(tmp_path: Path, chunks: int = 4) -> tuple[Path, list[dict]]:
    """A data dir whose round 1 has ``chunks`` chunks of agency 1 (3 bets each); the receipts."""
    data = tmp_path / "data"
    with Server(data, workers=2, agencies=2) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        receipts = [_post(client, 1, _rows(1, 3, f"k{i}"), f"k{i}").json() for i in range(chunks)]
    return data, receipts


def test_a_crash_between_leaf_and_ledger_leaves_neither_and_the_log_goes_on(tmp_path: Path) -> None:
    data, receipts = _round_1(tmp_path)
    leaves_file = data / "log" / "leaves"
    # As a writer killed after its leaves and bets reached the disk, before its ledger line.
    torn = leaves.ChunkStored(1, 1, "lost", 3, bytes(32)).bytes()
    with open(leaves_file, "ab") as f:
        f.write(len(torn).to_bytes(2, "big") + torn + bytes(SLOT - 2 - len(torn)) + b"\x00\x07partial")
    with open(data / "rounds" / "0001" / "bets.csv", "ab") as f:
        f.write(b"1,Lost,Bet,1,1990-01-01,1\n")
    # and one killed after its ledger line, before its checkpoint: the newest checkpoint is lost.
    checkpoints = data / "log" / "checkpoints"
    lines = checkpoints.read_bytes().splitlines(keepends=True)
    checkpoints.write_bytes(b"".join(lines[:-1]))
    with Server(data, workers=3, agencies=2) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert "5 leaves" in server.log()
        verifier = _verifier(client)
        assert leaves_file.stat().st_size == 5 * SLOT  # the uncommitted leaf and the partial slot: cut
        # The checkpoint the last receipt named is back, byte for byte (Ed25519 signs deterministically).
        last = receipts[-1]["log"]
        assert client.get("/log/checkpoint", params={"size": last["size"]}).text == last["checkpoint"]
        rows = _rows(1, 3, "after")
        answer = _post(client, 1, rows, "after")
        assert answer.json()["log"]["index"] == 5
        sizes = {_check_receipt(client, verifier, r, _rows(1, 3, f"k{i}"), f"k{i}") for i, r in enumerate(receipts)}
        sizes.add(_check_receipt(client, verifier, answer.json(), rows, "after"))
        _consistent(client, verifier, sizes)
        assert client.get("/status").json()["bets"] == 15


def _refusal(data: Path) -> str:
    refused = refused_start(data, {}, workers=2, agencies=2)
    lines = [line for line in refused.log.splitlines() if "refusing to start" in line]
    assert lines, refused.log
    return lines[0]


def test_the_server_refuses_to_start_when_a_leaf_is_altered(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path)
    with open(data / "log" / "leaves", "r+b") as f:
        f.seek(2 * SLOT + 30)
        byte = f.read(1)
        f.seek(2 * SLOT + 30)
        f.write(bytes([byte[0] ^ 1]))
    assert "a leaf among" in _refusal(data)


def _restarted_serves_every_receipt(data: Path, receipts: list[dict], keys: list[str | None]) -> None:
    """A server started on ``data`` hands out every checkpoint a receipt named, byte for byte, and
    every receipt verifies against it."""
    with Server(data, workers=2, agencies=2) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        verifier = _verifier(client)
        for receipt in receipts:
            answer = client.get("/log/checkpoint", params={"size": receipt["log"]["size"]})
            assert answer.status_code == 200 and answer.text == receipt["log"]["checkpoint"]
        sizes = {
            _check_receipt(client, verifier, r, _rows(1, 3, f"k{i}"), key)
            for i, (r, key) in enumerate(zip(receipts, keys, strict=True))
        }
        _consistent(client, verifier, sizes)


def _checkpoint_lines(data: Path) -> list[bytes]:
    return (data / "log" / "checkpoints").read_bytes().splitlines(keepends=True)


def test_checkpoints_a_power_cut_lost_are_signed_again_byte_for_byte(tmp_path: Path) -> None:
    """A chunk batch's checkpoint is written without its own fdatasync: after a power cut that
    lost it (the file's tail, a line torn in two, or a line before others that stayed), the
    start-up check signs every size the ledger records as a batch's again, the same bytes."""
    data, receipts = _round_1(tmp_path)
    keys: list[str | None] = [f"k{i}" for i in range(4)]
    original = _checkpoint_lines(data)
    assert [orjson.loads(line)["size"] for line in original] == [1, 2, 3, 4, 5]  # the opening's, a batch each
    checkpoints = data / "log" / "checkpoints"
    checkpoints.write_bytes(original[0] + original[1][:20])  # the opening's stays (synced); a torn line
    _restarted_serves_every_receipt(data, receipts, keys)
    assert _checkpoint_lines(data) == original
    checkpoints.write_bytes(original[0] + original[2] + original[4])  # lines lost between others
    _restarted_serves_every_receipt(data, receipts, keys)
    assert _checkpoint_lines(data) == original


def test_chunk_leaves_a_power_cut_lost_are_rebuilt_from_the_ledger_and_the_bets(tmp_path: Path) -> None:
    """A chunk's leaf is written without its own fdatasync: after a power cut that lost it (the
    file cut short, or a slot of zeros), the start-up check rebuilds it from its ledger line (an
    unkeyed chunk's drawn key is there) and its bets, byte for byte, before checking it."""
    data = tmp_path / "data"
    keys: list[str | None] = ["k0", None, "k2", None]
    with Server(data, workers=2, agencies=2) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        receipts = [_post(client, 1, _rows(1, 3, f"k{i}"), key).json() for i, key in enumerate(keys)]
    leaves_file = data / "log" / "leaves"
    original = leaves_file.read_bytes()
    os.truncate(leaves_file, 2 * SLOT)  # the opening and the first chunk stay
    _restarted_serves_every_receipt(data, receipts, keys)
    assert leaves_file.read_bytes() == original
    with open(leaves_file, "r+b") as f:  # a slot in the middle left as zeros, those after it whole
        f.seek(2 * SLOT)
        f.write(bytes(SLOT))
    _restarted_serves_every_receipt(data, receipts, keys)
    assert leaves_file.read_bytes() == original


def test_the_server_refuses_to_start_when_a_leaf_it_cannot_rebuild_is_cut(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path)
    os.truncate(data / "log" / "leaves", 0)  # the round's opening too: only a chunk's leaf is rebuilt
    line = _refusal(data)
    assert "leaves were removed" in line and "holds 0" in line


def test_the_server_refuses_to_start_when_a_ledger_line_is_removed(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path)
    ledger = data / "rounds" / "0001" / "ledger.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(lines[0] + b"".join(lines[2:]))
    assert "the chunk of leaf 2 was removed" in _refusal(data)
    ledger.write_bytes(b"".join(lines[:-1]))  # the last one: its leaf was signed
    assert "records of leaves 4 to 4 were removed" in _refusal(data)


def test_the_server_refuses_to_start_when_a_bet_is_altered_or_removed(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path)
    bets = data / "rounds" / "0001" / "bets.csv"
    original = bets.read_bytes()
    bets.write_bytes(original.replace(b"10000001", b"10000009", 1))
    line = _refusal(data)
    assert "chunk k0 (leaf 1)" in line and "differ from its leaf's digest" in line
    # A bet removed, the ledger's ends moved to match: still the digest that tells.
    first_line = original.index(b"\n") + 1
    bets.write_bytes(original[first_line:])
    records = [orjson.loads(x) for x in (data / "rounds" / "0001" / "ledger.jsonl").read_bytes().splitlines()]
    for record in records:
        record["end"] -= first_line
    records[0]["n"] -= 1
    (data / "rounds" / "0001" / "ledger.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    assert "(leaf 1)" in _refusal(data)


def test_the_server_refuses_to_start_when_a_checkpoint_is_not_the_logs(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path)
    checkpoints = data / "log" / "checkpoints"
    lines = checkpoints.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[-1])
    other = note.Signer.generate(ORIGIN)  # the same origin, another key
    record["note"] = note.sign(record["note"].split("\n\n")[0] + "\n", other).decode()
    checkpoints.write_bytes(b"".join(lines[:-1]) + orjson.dumps(record) + b"\n")
    assert "does not verify with the log's key" in _refusal(data)


def test_the_server_refuses_a_key_named_for_another_origin(tmp_path: Path) -> None:
    data, _ = _round_1(tmp_path, chunks=1)
    refused = refused_start(data, {"LOTTERY_LOG_ORIGIN": "other.example/log"}, workers=1, agencies=2)
    assert any("LOTTERY_LOG_KEY_FILE" in line and "other.example/log" in line for line in refused.lines), refused.log


# -- PostgreSQL: one log for every host of one database, and its start-up check ---------------


def _pg_hosts(tmp_path: Path, url: str, key: Path, count: int = 2) -> list[Server]:
    """``count`` hosts (gunicorn masters, two workers each) on one database, signing with one key file."""
    return [
        Server(
            tmp_path / f"host-{n}" / "data",
            workers=2,
            agencies=3,
            log_path=tmp_path / f"host-{n}.log",
            env={"LOTTERY_DATABASE_URL": url, "LOTTERY_LOG_KEY_FILE": str(key)},
        )
        for n in range(1, count + 1)
    ]


def test_two_hosts_on_one_database_keep_one_log(tmp_path: Path) -> None:
    """Agencies spread their chunks over two hosts: every receipt verifies, the leaves are one
    sequence, and every checkpoint either host handed out is a prefix of the latest, on both."""
    key = tmp_path / "log.key"
    keyfile.write_new_key(key, ORIGIN)
    receipts: list[tuple[dict, list, str | None]] = []
    guard = threading.Lock()
    with fresh_database("lottery_tlog_hosts") as url:
        hosts = _pg_hosts(tmp_path, url, key)
        try:
            for host in hosts:
                host.start()

            def agency(number: int) -> None:
                salt = leaves.new_salt()
                clients = [httpx.Client(base_url=host.url, timeout=30) for host in hosts]
                try:
                    for i in range(12):
                        rows = _rows(number, 1 + i % 4, f"{number}x{i}")
                        key = None if i % 3 == 2 else f"a{number}-c{i}"
                        answer = _post(clients[(i + number) % 2], number, rows, key, salt)
                        assert answer.status_code == 201, answer.text
                        with guard:
                            receipts.append((answer.json(), rows, key))
                finally:
                    for client in clients:
                        client.close()

            threads = [threading.Thread(target=agency, args=(n,)) for n in (1, 2, 3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(r["log"]["index"] for r, _, _ in receipts) == list(range(1, 37))
            for host in hosts:
                with httpx.Client(base_url=host.url, timeout=30) as client:
                    verifier = _verifier(client)
                    sizes = {_check_receipt(client, verifier, receipt, rows, k) for receipt, rows, k in receipts}
                    _consistent(client, verifier, sizes)
            # A replay on the other host: the same leaf, index and salt.
            first, rows, again_key = next(r for r in receipts if r[2] is not None)
            with httpx.Client(base_url=hosts[1].url, timeout=30) as client:
                again = _post(client, rows[0][0], rows, again_key, leaves.new_salt())
                assert again.status_code == 200
                assert {k: again.json()["log"][k] for k in ("index", "leaf", "salt")} == {
                    k: first["log"][k] for k in ("index", "leaf", "salt")
                }
                _check_receipt(client, _verifier(client), again.json(), rows, again_key)
        finally:
            for host in hosts:
                host.stop()


def _pg_round_1(tmp_path: Path, url: str) -> Path:
    """Round 1 on ``url`` with 4 chunks of agency 1 (3 bets each, keys k0..k3); the data dir."""
    data = tmp_path / "data"
    env = {"LOTTERY_DATABASE_URL": url}
    with Server(data, workers=2, agencies=2, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        for i in range(4):
            assert _post(c, 1, _rows(1, 3, f"k{i}"), f"k{i}").status_code == 201
    return data


def _pg_refusal(data: Path, url: str, **env: str) -> str:
    refused = refused_start(data, {"LOTTERY_DATABASE_URL": url, **env}, workers=2, agencies=2)
    lines = [line for line in refused.log.splitlines() if "refusing to start" in line]
    assert lines, refused.log
    return lines[0]


def _sql(url: str, statement: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement).rowcount


def test_postgres_refuses_to_start_when_its_log_or_round_was_changed(tmp_path: Path) -> None:
    with fresh_database("lottery_tlog_check") as url:
        data = _pg_round_1(tmp_path, url)
        # A leaf altered (leaf 2: chunk k1).
        assert _sql(url, "UPDATE lottery_log_leaves SET leaf = leaf || '\\x00'::bytea WHERE idx = 2") == 1
        assert "a leaf among 2 to 2 was altered" in _pg_refusal(data, url)
        assert _sql(
            url, "UPDATE lottery_log_leaves SET leaf = substring(leaf from 1 for length(leaf) - 1) WHERE idx = 2"
        )
        # A bet altered, then removed: the chunk's digest tells.
        assert _sql(
            url, "UPDATE lottery_bets SET document = '10000009' WHERE first_name = 'Anak2' AND document = '10000001'"
        )
        line = _pg_refusal(data, url)
        assert "chunk k2 (leaf 3)" in line and "differ from its leaf's digest" in line
        assert _sql(
            url, "UPDATE lottery_bets SET document = '10000001' WHERE first_name = 'Anak2' AND document = '10000009'"
        )
        assert _sql(url, "DELETE FROM lottery_bets WHERE first_name = 'Anak0' AND document = '10000000'") == 1
        assert "chunk k0 (leaf 1)" in _pg_refusal(data, url)
        # A chunk's row removed (its bets with it): its leaf is nobody's.
        assert _sql(url, "DELETE FROM lottery_bets WHERE first_name = 'Anak0'") == 2
        assert _sql(url, "DELETE FROM lottery_chunks WHERE idempotency_key = 'k0'") == 1
        assert "chunk k0 (leaf 1): its leaf is in the log but lottery_chunks has no row" in _pg_refusal(data, url)


def test_postgres_refuses_a_host_whose_log_key_is_another(tmp_path: Path) -> None:
    with fresh_database("lottery_tlog_key") as url:
        data = _pg_round_1(tmp_path, url)
        other = tmp_path / "other.key"
        keyfile.write_new_key(other, ORIGIN)
        line = _pg_refusal(data, url, LOTTERY_LOG_KEY_FILE=str(other))
        assert "every host must use the same key file" in line
