"""``python -m client verify`` and the uploader's receipts, against an in-process server that
follows issue 23's contract (tests/support/fake_log.py: a real tlog tree, checkpoints signed by
a test key). A good round verifies; each lie the server can tell fails, naming its evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import commands
from client.http import Api
from client.receipts import default_path, read
from client.rounds import target
from client.upload import Uploader, scan
from tests.support.fake_log import FakeLottery, log_signer
from tlog import b64, draw, leaves, merkle

WINNING = 7574
HEADER = "first_name,last_name,document,birthdate,number"


def _file(tmp_path: Path, agency: int, bets: int = 23) -> Path:
    """Bets i of agency ``agency``: every fifth plays the winning number; line i + 2 (a header first)."""
    lines = [
        f" Ana {i} ,Paz{agency},{agency * 1000 + i},1990-01-0{1 + i % 9},{WINNING if i % 5 == 0 else f'00{i}'}"
        for i in range(bets)
    ]
    path = tmp_path / f"agency-{agency}.csv"
    path.write_text(HEADER + "\r\n" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def _api(fake: FakeLottery) -> Api:
    return Api("http://lottery.test", retries=0, transport=fake.transport())


def _upload(fake: FakeLottery, path: Path, agency: int, done: bool = True) -> Uploader:
    api = target(_api(fake), agency, None)
    uploader = Uploader(api, agency, path, batch_size=7, concurrency=2, receipts=default_path(path))
    uploader.run()
    if done:
        api.request("POST", f"/agencies/{agency}/done")
    return uploader


@pytest.fixture
def use(monkeypatch):
    """Point the command line's server at a fake."""

    def point(fake: FakeLottery) -> None:
        monkeypatch.setattr(commands, "api", lambda options, stop=None: _api(fake))

    return point


def _round(tmp_path: Path, winning_number: int | None = WINNING) -> tuple[FakeLottery, Path]:
    fake = FakeLottery(agencies=2, winning_number=winning_number)
    path = _file(tmp_path, 1)
    _upload(fake, path, 1)
    _upload(fake, _file(tmp_path, 2), 2)
    assert fake.drawn is not None
    return fake, path


def _verify(capsys, path: Path, *extra: str, key: str | None = None) -> tuple[int, str]:
    from client.__main__ import main

    vkey = key or log_signer().verifier().vkey()
    code = main(["verify", "--agency", "1", "--file", str(path), "--round", "1", "--log-key", vkey, *extra])
    return code, capsys.readouterr().out


# -- a good round -------------------------------------------------------------------------------


@pytest.mark.parametrize("winning_number", [WINNING, None], ids=["fixed", "random"])
def test_a_good_round_verifies(tmp_path, use, capsys, winning_number) -> None:
    fake, path = _round(tmp_path, winning_number)
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 0, out
    assert out.endswith("verified: every check holds\n")
    assert "FAIL" not in out and "4 chunks of" in out  # 23 bets in chunks of 7
    if winning_number is None:
        assert f"random: {fake.drawn['winning_number']}, derived from the committed seed" in out
    else:
        assert "only its bets are provable, not its number" in out
        assert "agency 1's 5 winners are the file's bets on 7574" in out
    code, out = _verify(capsys, path, "--json")
    report = json.loads(out)
    assert code == report["status"] == 0 and all(c["ok"] for c in report["checks"])


def test_the_receipts_keep_every_chunk_and_a_rerun_reuses_the_salt(tmp_path) -> None:
    fake = FakeLottery(agencies=2)
    path = _file(tmp_path, 1)
    kept = b64.encode(bytes(range(32)))
    upload_id = scan(path).upload_id
    Path(default_path(path)).write_text(
        json.dumps({"kind": "salt", "round": 1, "agency": 1, "upload_id": upload_id, "salt": kept}) + "\n"
    )
    _upload(fake, path, 1, done=False)
    records = read(default_path(path))
    chunks = [r for r in records if r["kind"] == "chunk"]
    assert [r["kind"] for r in records].count("salt") == 1  # the kept one: no other salt drawn
    assert sorted((r["start"], r["end"]) for r in chunks) == [(0, 7), (7, 14), (14, 21), (21, 23)]
    assert {r["salt"] for r in chunks} == {kept} == {c["salt"] for c in fake.chunks.values()}
    first = min(chunks, key=lambda r: r["start"])
    assert first["lines"] == [2, 8] and first["key"] == f"{upload_id}:0-7"
    assert b64.decode(first["leaf"]) == fake.chunks[first["key"]]["leaf"] and first["index"] < first["size"]
    assert first["checkpoint"].startswith(f"lottery.test/log\n{first['size']}\n")


def test_a_receipts_file_that_cannot_be_written_costs_the_receipts_not_the_upload(tmp_path, caplog) -> None:
    fake = FakeLottery(agencies=1, winning_number=WINNING)
    path = _file(tmp_path, 1)
    api = target(_api(fake), 1, None)
    uploader = Uploader(api, 1, path, batch_size=7, concurrency=2, receipts=str(tmp_path / "missing" / "r.jsonl"))
    uploader.run()
    assert uploader.sent == 23 and len(fake.chunks) == 4
    warnings = [r.getMessage() for r in caplog.records if "action: recibos | result: fail" in r.getMessage()]
    assert len(warnings) == 1 and "goes on without receipts" in warnings[0]


def test_a_server_without_the_log_uploads_as_before_and_verify_says_it_cannot(tmp_path, use, capsys) -> None:
    fake = FakeLottery(agencies=1, winning_number=WINNING)
    original = fake._receipt
    fake._receipt = lambda chunk: {"stored": original(chunk)["stored"]}  # no "log"
    fake._log = lambda what, q: __import__("httpx").Response(404, json={"title": "Not Found"})
    path = _file(tmp_path, 1)
    uploader = _upload(fake, path, 1)
    assert uploader.sent == 23
    assert not Path(default_path(path)).exists()  # nothing to keep
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 3 and "keeps no log" in out


def test_without_the_receipts_file_the_server_upload_state_is_used(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    Path(default_path(path)).unlink()
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 0, out
    assert "0 from" in out and "4 learned from the server's upload state" in out
    assert "no checkpoint was kept during the upload" in out


# -- each lie fails, with its evidence ------------------------------------------------------------


def test_one_bet_of_the_file_changed_fails_naming_its_chunk(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    text = path.read_text().replace("Paz1,1009,", "Paz1,1019,")  # bet 9, line 11: chunk 7-14, lines 9-15
    path.write_text(text)
    use(fake)
    code, out = _verify(capsys, path, "--upload-id", scan(path).upload_id)  # the receipts name the old id
    assert code == 1
    assert f"FAIL  chunk {path}:9-15 (bets 7-13" in out
    assert "the leaf in its receipt is not the file's" in out


def test_a_chunk_leaf_altered_in_the_log_fails_naming_the_chunk_and_the_fork(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    chunk = fake.chunk_of(1)
    leaf = leaves.parse_leaf(chunk["leaf"])
    assert isinstance(leaf, leaves.ChunkStored)
    other = leaves.ChunkStored(leaf.round, leaf.agency, leaf.key, leaf.bets, bytes(32)).bytes()
    fake.tamper_rewrite(chunk["index"], other)
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1
    assert f"FAIL  chunk {path}:2-8 (bets 0-6" in out and "is not at index" in out
    assert "inclusion proof of leaf" in out and "digest AAAAAAAA" in out  # the log's leaf, shown
    assert "the log forked" in out and out.count("  | lottery.test/log") >= 2  # both checkpoints


def test_a_chunk_removed_from_the_log_fails_naming_the_chunk(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    fake.tamper_remove(fake.chunk_of(1)["index"])
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1
    assert f"FAIL  chunk {path}:2-8 (bets 0-6" in out
    assert "the log forked" in out


def test_an_earlier_leaf_rewritten_is_an_inconsistent_checkpoint(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    fake.tamper_rewrite(0, leaves.RoundOpened(1, 3, WINNING).bytes())  # the opening, rewritten after the fact
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1
    assert "does not extend the tree of" in out and "consistency proof" in out
    assert "chunk" not in "".join(line for line in out.splitlines() if line.startswith("FAIL"))


def test_a_checkpoint_of_another_origin_fails(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    fake.origin = "other.test/log"
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1 and "not a checkpoint of lottery.test/log" in out and "other.test/log" in out


def test_a_bad_signature_fails(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    fake.bad_signature = True
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1 and "invalid signature" in out


def test_another_key_is_not_trusted(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    use(fake)
    code, out = _verify(capsys, path, key=log_signer(label=b"another key").verifier().vkey())
    assert code == 1 and "no verifiable signatures" in out


def test_a_random_number_that_does_not_follow_from_the_log_fails(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path, None)
    right = fake.drawn["winning_number"]
    fake.drawn["winning_number"] = (right + 1) % 10_000
    use(fake)
    code, out = _verify(capsys, path)
    assert (
        code == 1
        and f"the number {(right + 1) % 10_000} does not follow from the seed and the log (it gives {right})" in out
    )


def test_a_seed_that_is_not_the_committed_one_fails(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path, None)
    seed = bytes(32)
    fake.drawn["seed"] = b64.encode(seed)
    fake.drawn["winning_number"] = draw.winning_number(
        "lottery.test/log", 1, fake.drawn["size"], fake.tree.root(), seed
    )
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1 and "the published seed is not the one committed to when it opened" in out


def test_winners_that_differ_from_the_file_fail(tmp_path, use, capsys) -> None:
    fake, path = _round(tmp_path)
    dropped = fake.winners[1].pop()
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 1 and f"the server's list lacks ['{dropped}']" in out


def test_a_round_not_drawn_yet_cannot_be_verified(tmp_path, use, capsys) -> None:
    fake = FakeLottery(agencies=2, winning_number=WINNING)
    path = _file(tmp_path, 1)
    _upload(fake, path, 1)
    use(fake)
    code, out = _verify(capsys, path)
    assert code == 3 and "not drawn yet" in out and "FAIL" not in out


# -- the parts ------------------------------------------------------------------------------------

NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=12)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(NAMES, NAMES, st.from_regex(r"[0-9]{1,10}", fullmatch=True), st.integers(0, 9999), st.integers(1, 4)),
        min_size=1,
        max_size=8,
    )
)
def test_the_rows_rebuilt_are_the_rows_the_server_stores(bets) -> None:
    import csv
    import io

    from app.ingest import InvalidChunk, parse_csv
    from client.rows import stored_rows

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        (first, last, doc, "1990-05-01", str(number).zfill(width)) for first, last, doc, number, width in bets
    )
    body = out.getvalue().encode()
    try:
        parsed = parse_csv(body, 7, 100, only_bets=True)
    except InvalidChunk:  # a name the server refuses (blank, a formula prefix...): never stored
        return
    assert stored_rows(7, body) == parsed.payload


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_a_tree_is_rebuilt_from_the_left_border_and_the_leaves_after_it(case) -> None:
    from client.verify import left_border, root_with

    size, start = case
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = merkle.Tree()
    for h in hashes:
        tree.append(h)
    border = left_border(start, size, tree.inclusion_proof(start, size))
    assert root_with(border, start, hashes[start:]) == tree.root()
    if size > start + 1:
        assert root_with(border, start, [*hashes[start:-1], merkle.leaf_hash(b"x")]) != tree.root()


def test_range_bodies_cuts_overlapping_ranges_in_one_pass(tmp_path, monkeypatch) -> None:
    import client.lines
    from client.verify import range_bodies

    monkeypatch.setattr(client.lines, "READ_BLOCK", 64)  # ranges straddle blocks
    path = _file(tmp_path, 1, bets=40)
    lines = [line + "\n" for line in path.read_text().splitlines()[1:]]
    ranges = [(10, 20), (0, 15), (35, 41), (39, 40)]
    got = {i: (body, where) for i, body, where in range_bodies(path, ranges)}
    assert got[0] == ("".join(lines[10:20]).encode(), "12-21")
    assert got[1] == ("".join(lines[0:15]).encode(), "2-16")
    assert got[3] == (lines[39].encode(), "41-41")
    assert got[2] == (None, "")  # past the end of the file
