"""The operator's page and the API docs in a real browser: Debian's chromium, driven by Playwright.

Real gunicorn (3 workers, tokens configured), real uploader processes on small generated
files, and assertions on what a person sees: nothing before the token, then one row per
agency turning done, the bets total reaching what was uploaded, the draw with its winners
count. Every request the browser makes is recorded: none may leave 127.0.0.1 (no CDN).

Needs ``apt-get install chromium`` (the browser is never downloaded: no ``playwright install``).
Screenshots go to ``.pytest_cache/artifacts/browser/`` (the path is printed).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app import tokens as tokens_module
from devtools.screenshot import CHROMIUM, CHROMIUM_ARGS  # the flags chromium needs on this closed network
from devtools.server import ROOT, Server
from tests.postgres_db import fresh_database
from tests.support.uploader import uploader

ARTIFACTS = ROOT / ".pytest_cache" / "artifacts" / "browser"
AGENCIES = 3
BETS = 4000  # per agency: a few chunks each at --batch-size 500
SEE = 10_000  # ms a person may wait for the page to show something (it updates within a second)

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements.txt")
pytestmark = [
    pytest.mark.long,  # a browser and whole rounds: `make test-long`
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


def shot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """A fresh chromium profile; yields a page whose every request URL is recorded in ``page.requested``."""
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = context.new_page()
            page.requested = []
            page.errors = []
            page.on("request", lambda request: page.requested.append(request.url))
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            yield page
        finally:
            context.close()


def assert_only_loopback(requested: list[str]) -> None:
    assert requested, "the browser made no request at all"
    away = [
        url
        for url in requested
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != "127.0.0.1"
    ]
    assert away == [], f"requests that left 127.0.0.1: {away}"


@pytest.fixture(params=["files", "postgres"])
def secured(request, tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    tokens = {**tokens_module.make(AGENCIES), "operator": "operator-" + "x" * 24}
    (tmp_path / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
    env = {"LOTTERY_TOKENS_FILE": str(tmp_path / "tokens.json")}
    with ExitStack() as stack:
        if request.param == "postgres":
            env["LOTTERY_DATABASE_URL"] = stack.enter_context(fresh_database())
        yield stack.enter_context(Server(tmp_path / "data", workers=3, agencies=AGENCIES, env=env)), tokens


def upload(server: Server, agency: int, path: Path, token: str) -> subprocess.Popen:
    return uploader(
        *("run", "--server", server.url, "--agency", str(agency), "--file", str(path)),
        *("--token", token, "--batch-size", "500", "--quiet", "--json"),
        env={"PYTHONFAULTHANDLER": "1"},  # SIGABRT prints where every thread is (wait_for_log)
    )


def wait_for_log(server: Server, text: str, uploaders: list[subprocess.Popen], timeout: float = 120) -> None:
    """Until the server logs ``text``; on failure, what the uploaders and the server said."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        if time.monotonic() >= deadline:
            raise AssertionError(f"the server never logged {text!r}\n{_stop_and_report(server, uploaders)}")
        time.sleep(0.05)


def _stop_and_report(server: Server, uploaders: list[subprocess.Popen]) -> str:
    """Where each uploader still running was (its threads' stacks), what each said, the server's log."""
    for proc in uploaders:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack, then exit
    said = "\n".join(f"uploader exit {p.wait()}: {p.communicate()[1][-6000:]}" for p in uploaders)
    return f"{said}\nserver:\n{server.log()[-6000:]}"


def generated_files(where: Path) -> list[Path]:
    subprocess.run(
        [sys.executable, "-m", "client", "generate", "--agencies", str(AGENCIES), "--bets", str(BETS)]
        + ["--out", str(where), "--seed", "12"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return [where / f"agency-{a}.csv" for a in range(1, AGENCIES + 1)]


def test_a_round_as_the_operator_sees_it(secured, browser, tmp_path: Path) -> None:
    import httpx
    from playwright.sync_api import expect

    # Every look waits as long as a person would on a busy machine, not Playwright's 5 s default.
    expect.set_options(timeout=SEE)
    server, tokens = secured
    page = browser
    files = generated_files(tmp_path / "agencies")
    row = page.locator("#agencies tbody tr")

    # Before a token: the form, and nothing of the round.
    page.goto(server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#round")).to_be_hidden()
    assert row.count() == 0
    assert "Agency 1" not in page.content()
    shot(page, "1-token-form")

    page.fill("#token", "not-a-valid-token-at-all")
    page.click("#login button")
    expect(page.locator("#login-error")).to_have_text("That token is not valid.", timeout=SEE)
    expect(page.locator("#round")).to_be_hidden()

    page.fill("#token", tokens["operator"])
    page.click("#login button")
    expect(row).to_have_count(AGENCIES, timeout=SEE)
    expect(page.locator("[data-testid=total-bets]")).to_have_text("0")
    expect(page.locator("[data-testid=round-state]")).to_have_text("open, taking bets")
    for agency in range(1, AGENCIES + 1):
        expect(page.locator(f'tr[data-agency="{agency}"] td').nth(4)).to_have_text("not yet")
    # The transparency panel: round 1 has the settings' fixed number, on both backends (issue 23).
    logged = httpx.get(server.url + "/log/vkey", headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert logged.status_code == 200, logged.text
    expect(page.locator("[data-testid=tlog-vkey]")).to_have_text(logged.text.strip())
    expect(page.locator("[data-testid=tlog-note]")).to_contain_text(
        "only this round's bets, not its number, are provable"
    )
    expect(page.locator("[data-testid=tlog-none]")).to_be_hidden()
    # The token lives in this tab's session storage only, and not in the page.
    assert page.evaluate("sessionStorage.getItem('lottery.operator.token')") == tokens["operator"]
    assert page.evaluate("localStorage.length") == 0
    assert tokens["operator"] not in page.content()

    # Two agencies upload and say done: their rows turn done; the round stays open.
    first = [upload(server, a, files[a - 1], tokens[str(a)]) for a in (1, 2)]
    for agency in (1, 2):
        # The server's word first (uploaders may start slowly on a busy machine); then the page's.
        wait_for_log(server, f"action: agencia_finalizada | result: success | agencia: {agency} |", first)
        expect(page.locator(f'tr[data-agency="{agency}"] td').nth(4)).to_have_text("done", timeout=SEE)
        expect(page.locator(f'tr[data-agency="{agency}"] td').nth(1)).to_have_text(f"{BETS:,}", timeout=SEE)
    expect(page.locator("[data-testid=done-count]")).to_have_text("2")
    expect(page.locator(f'tr[data-agency="{AGENCIES}"] td').nth(4)).to_have_text("not yet")
    expect(page.locator("[data-testid=round-state]")).to_have_text("open, taking bets")
    expect(page.locator("[data-testid=draw]")).to_be_hidden()
    expect(page.locator("#rate polyline")).to_have_attribute("points", re.compile(r"\S"))  # the chart drew
    shot(page, "2-two-agencies-done")

    # The last agency: every row done, the total is what was uploaded, the draw is shown.
    last = upload(server, AGENCIES, files[-1], tokens[str(AGENCIES)])
    wait_for_log(server, f"action: agencia_finalizada | result: success | agencia: {AGENCIES} |", [*first, last])
    results = {}
    for agency, proc in zip(range(1, AGENCIES + 1), [*first, last], strict=True):
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agency {agency} never ended\n{_stop_and_report(server, [*first, last])}") from None
        assert proc.returncode == 0, err
        results[agency] = json.loads(out)["winners"]
    expect(page.locator("[data-testid=total-bets]")).to_have_text(f"{AGENCIES * BETS:,}", timeout=SEE)
    expect(page.locator("[data-testid=round-state]")).to_have_text("drawn", timeout=SEE)
    expect(page.locator("[data-testid=done-count]")).to_have_text(str(AGENCIES))
    total = sum(len(w) for w in results.values())
    expect(page.locator("[data-testid=draw]")).to_contain_text(f"{total} winner")
    expect(page.locator("[data-testid=draw]")).to_contain_text("Drawn at")
    for agency, winners in results.items():
        cells = page.locator(f'tr[data-agency="{agency}"] td')
        expect(cells.nth(4)).to_have_text("done")
        expect(cells.nth(5)).to_have_text(str(len(winners)))  # the count, never the documents
    html = page.content()
    for document in (d for winners in results.values() for d in winners):
        assert document not in html
    for token in tokens.values():
        assert token not in html
    expect(page.locator("#past")).to_contain_text("No past rounds")
    shot(page, "3-drawn")
    assert_only_loopback(page.requested)
    assert page.errors == []


def test_docs_render_offline(tmp_path: Path, browser) -> None:
    from playwright.sync_api import expect

    page = browser
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        page.goto(server.url + "/")
        page.click("text=API docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Lotería Nacional", timeout=SEE)
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        shot(page, "docs-swagger", full_page=False)
        page.goto(server.url + "/redoc")
        expect(page.locator("h1").first).to_contain_text("Lotería Nacional", timeout=SEE)
        page.wait_for_load_state("networkidle")
        shot(page, "docs-redoc", full_page=False)
    assert_only_loopback(page.requested)
    assert any(url.endswith("/docs") for url in page.requested)


def test_swagger_try_it_out_opens_a_round_with_the_servers_settings_and_says_so(tmp_path: Path, browser) -> None:
    """Issue 25.5: the example body of ``POST /rounds`` was a made-up round (winning number 9999)
    that Execute opened for real, with no warning; now it is ``{}`` (the server's settings) and
    the route says, as the bets route does, that Try it out acts for real."""
    import httpx
    from playwright.sync_api import expect

    page = browser
    env = {"LOTTERY_WINNING_NUMBER": "4321"}
    with Server(tmp_path / "data", workers=2, agencies=2, env=env) as server:
        for agency in (1, 2):  # round 1 drawn: the next one may open
            assert httpx.post(f"{server.url}/agencies/{agency}/done").status_code == 200
        page.goto(server.url + "/docs")
        operation = page.locator("#operations-rounds-open_round_rounds_post")
        expect(operation).to_be_visible(timeout=SEE)
        operation.locator(".opblock-summary").click()  # unfolds it, as a person does
        expect(operation).to_contain_text("Try it out opens a real round", timeout=SEE)
        operation.locator(".try-out__btn").click()
        body = operation.locator("textarea.body-param__text")
        expect(body).to_be_visible(timeout=SEE)
        assert json.loads(body.input_value()) == {}
        operation.locator(".execute").click()
        expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_contain_text(
            "201", timeout=SEE
        )
        shot(page, "docs-open-round", full_page=False)
        opened = httpx.get(f"{server.url}/rounds/2").json()
    assert (opened["agencies"], opened["winning_number"], opened["random"]) == (2, 4321, False)
    assert_only_loopback(page.requested)


def chart_heights(page) -> list[float]:
    """The rate chart's points as heights above its baseline (0: no bets per second)."""
    points = page.locator("#rate polyline").get_attribute("points") or ""
    return [118 - float(p.split(",")[1]) for p in points.split()]


def test_the_page_shows_winning_numbers_zoned_times_and_keeps_its_chart_on_reload(browser, tmp_path: Path) -> None:
    """Issue 25.11: the winning number (current and past rounds), times with their zone, where
    the operator's token is, and an ingest chart the server keeps (a reload showed it empty)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=SEE)
    tokens = {**tokens_module.make(1), "operator": "operator-" + "y" * 24}
    (tmp_path / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
    env = {"LOTTERY_TOKENS_FILE": str(tmp_path / "tokens.json"), "LOTTERY_WINNING_NUMBER": "4321"}
    files = generated_files(tmp_path / "agencies")
    page = browser
    with Server(tmp_path / "data", workers=2, agencies=1, env=env) as server:
        page.goto(server.url + "/")
        expect(page.locator("#login")).to_contain_text("secrets/operator.token")
        expect(page.locator("#login")).to_contain_text("python -m app.tokens")
        page.fill("#token", tokens["operator"])
        page.click("#login button")
        expect(page.locator("[data-testid=winning-number]")).to_have_text("4321")

        proc = upload(server, 1, files[0], tokens["1"])
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        expect(page.locator("[data-testid=round-state]")).to_have_text("drawn")
        expect(page.locator("[data-testid=draw]")).to_contain_text("winning number 4321")
        # Times say their zone (the browser's; UTC here).
        expect(page.locator('tr[data-agency="1"] td').nth(3)).to_have_text(re.compile(r"^\d\d:\d\d:\d\d (UTC|GMT)"))
        expect(page.locator("[data-testid=draw]")).to_contain_text(re.compile(r"Drawn at .*\d\d:\d\d:\d\d (UTC|GMT)"))
        expect(page.locator("#rate polyline")).to_have_attribute("points", re.compile(r"\S"))
        assert max(chart_heights(page)) > 0  # the upload's bets per second

        page.reload()  # a new page: the chart comes from the server, not from what this tab saw
        expect(page.locator("[data-testid=round-state]")).to_have_text("drawn")
        expect(page.locator("#rate polyline")).to_have_attribute("points", re.compile(r"\S"))
        assert max(chart_heights(page)) > 0
        shot(page, "reloaded-chart")

        # Round 2 opened: round 1, with its winning number, is a past round.
        opened = httpx_post(server.url + "/rounds", tokens["operator"], {"winning_number": "random"})
        assert opened == 201
        expect(page.locator("[data-testid=round-state]")).to_have_text("open, taking bets")
        expect(page.locator("[data-testid=winning-number]")).to_have_text("random, drawn at the draw")
        expect(page.locator("#past tbody tr").first).to_contain_text("4321")
        expect(page.locator("#past thead")).to_contain_text("Winning number")
        shot(page, "past-round")
    assert_only_loopback(page.requested)
    assert page.errors == []


def httpx_post(url: str, token: str, body: dict) -> int:
    import httpx

    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_round_of_many_agencies_shows_the_ones_not_done_and_the_slowest(browser, tmp_path: Path) -> None:
    """Issue 21: above TABLE_ROWS agencies the table holds the first agencies not done yet (an
    agency leaves it when done, the next comes in) and the page names the slowest ones."""
    import httpx
    from playwright.sync_api import expect

    from app.routes.operator import SLOWEST, TABLE_ROWS

    expect.set_options(timeout=SEE)
    agencies = TABLE_ROWS + 50
    page = browser
    with Server(tmp_path / "data", workers=2, agencies=agencies) as server:
        bet = "Ana,Gómez,30904465,1990-01-01,1\n".encode()
        for agency in (1, 2, 3):
            r = httpx.post(f"{server.url}/agencies/{agency}/bets", content=bet, headers={"Content-Type": "text/csv"})
            assert r.status_code == 201, r.text
        for agency in (1, 2):
            assert httpx.post(f"{server.url}/agencies/{agency}/done").status_code == 200
        page.goto(server.url + "/")
        rows = page.locator("#agencies tbody tr")
        expect(rows).to_have_count(TABLE_ROWS)
        expect(rows.first).to_have_attribute("data-agency", "3")
        expect(rows.last).to_have_attribute("data-agency", str(TABLE_ROWS + 2))
        expect(page.locator("[data-testid=table-note]")).to_have_text(
            f"The {TABLE_ROWS} lowest-numbered of the {agencies - 2} agencies not done yet."
        )
        slowest = page.locator("[data-testid=slowest] li")
        expect(slowest).to_have_count(SLOWEST)
        expect(slowest.first).to_have_text("Agency 4: nothing stored yet, 0 bets")  # never seen: the slowest
        assert httpx.post(f"{server.url}/agencies/3/done").status_code == 200
        expect(rows.first).to_have_attribute("data-agency", "4")  # agency 3 left the table, 103 came in
        expect(rows.last).to_have_attribute("data-agency", str(TABLE_ROWS + 3))
        expect(rows).to_have_count(TABLE_ROWS)
        shot(page, "many-agencies")

        # Search and pages: every agency, a page at a time.
        note = page.locator("[data-testid=table-note]")
        page.fill("#find-agency", "10")
        page.click("#find button[type=submit]")
        expect(rows.first).to_have_attribute("data-agency", "10")
        expect(note).to_have_text(f"Agencies 10 to 109 of {agencies}.")
        page.click("#page-prev")
        expect(rows.first).to_have_attribute("data-agency", "1")
        expect(page.locator('tr[data-agency="1"] td').nth(4)).to_have_text("done")
        page.click("#page-next")
        expect(note).to_have_text(f"Agencies {agencies - TABLE_ROWS + 1} to {agencies} of {agencies}.")  # the last page
        expect(rows.last).to_have_attribute("data-agency", str(agencies))
        assert httpx.post(f"{server.url}/agencies/{agencies}/done").status_code == 200
        expect(page.locator(f'tr[data-agency="{agencies}"] td').nth(4)).to_have_text("done")  # the page follows
        page.click("#page-pending")
        expect(rows.first).to_have_attribute("data-agency", "4")
        expect(note).to_contain_text("not done yet")
    assert_only_loopback(page.requested)
    assert page.errors == []


def test_the_transparency_panel_checks_a_random_draw_in_the_browser(browser, tmp_path: Path) -> None:
    """Issue 23: the operator's page shows the log's head, the round's leaves and commitment, and
    after the draw checks in the browser (crypto.subtle) that the number follows from the
    committed seed and the log's root: "checked" on a real round, the mismatch on data with a
    wrong seed or a wrong number (the page's data served altered by a route). A fixed round says
    only its bets are provable."""
    import httpx
    from playwright.sync_api import expect

    from tests.unit.test_tlog_draw import GOLDEN, ORIGIN
    from tlog import b64, checkpoint, note
    from tlog import draw as draw_module

    expect.set_options(timeout=SEE)
    tokens = {**tokens_module.make(AGENCIES), "operator": "operator-" + "z" * 24}
    (tmp_path / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
    files = generated_files(tmp_path / "agencies")
    page = browser
    testid = lambda name: page.locator(f"[data-testid={name}]")  # noqa: E731
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    env = {"LOTTERY_TOKENS_FILE": str(tmp_path / "tokens.json")}
    with (
        Server(tmp_path / "data", workers=2, agencies=AGENCIES, env=env) as server,
        httpx.Client(base_url=server.url, headers=operator) as api,
    ):
        vkey = api.get("/log/vkey").text.strip()
        for agency in range(1, AGENCIES + 1):  # round 1 (the settings' fixed number) drawn empty
            r = api.post(f"/agencies/{agency}/done", headers={"Authorization": f"Bearer {tokens[str(agency)]}"})
            assert r.status_code == 200, r.text
        page.goto(server.url + "/")
        page.fill("#token", tokens["operator"])
        page.click("#login button")
        expect(testid("round-state")).to_have_text("drawn")
        expect(testid("tlog-note")).to_have_text(
            "The winning number 7574 was fixed when the round opened: only this round's bets, not its number, "
            "are provable."
        )
        expect(testid("proof")).to_be_hidden()
        expect(testid("tlog-commitment")).to_have_count(0)

        # Round 2, random: its commitment from the opening; the seed stays secret.
        assert api.post("/rounds", json={"winning_number": "random"}).status_code == 201
        opened = api.get("/rounds/2").json()
        expect(testid("round-state")).to_have_text("open, taking bets")
        expect(testid("tlog-commitment")).to_have_text(opened["seed_commitment"])
        expect(testid("tlog-opened")).to_have_text(str(opened["log"]["opened"]))
        expect(testid("tlog-vkey")).to_have_text(vkey)
        expect(testid("tlog-origin")).to_have_text(vkey.split("+")[0])
        expect(testid("tlog-seed")).to_have_count(0)
        expect(testid("proof")).to_be_hidden()
        expect(testid("tlog-command")).to_have_text(
            f"python -m client verify --agency A --file F --round 2 --log-key '{vkey}'"
        )

        uploads = [upload(server, a, files[a - 1], tokens[str(a)]) for a in range(1, AGENCIES + 1)]
        for agency, proc in enumerate(uploads, start=1):
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"agency {agency} never ended\n{_stop_and_report(server, uploads)}") from None
            assert proc.returncode == 0, err
        drawn = api.get("/rounds/2").json()
        draw = drawn["draw"]
        assert drawn["state"] == "drawn" and draw["seed"] is not None
        head = checkpoint.Checkpoint.parse(note.parse_note(api.get("/log/checkpoint").content).text)
        expect(testid("round-state")).to_have_text("drawn")
        expect(testid("proof-verdict")).to_have_text(
            f"checked: the winning number {draw['winning_number']} follows from the seed committed when the round "
            "opened and the log's root at the draw."
        )
        for name, value in (
            ("tlog-seed", draw["seed"]),
            ("tlog-draw-size", str(draw["size"])),
            ("tlog-draw-root", draw["root"]),
            ("tlog-number", str(draw["winning_number"])),
            ("winning-number", str(drawn["winning_number"])),
            ("tlog-commitment", opened["seed_commitment"]),
            ("tlog-checkpoint-size", str(head.size)),  # nothing after the draw: its checkpoint is the latest
            ("tlog-checkpoint-root", b64.encode(head.root)),
        ):
            expect(testid(name)).to_have_text(value)
        assert (head.size, b64.encode(head.root)) == (draw["size"], draw["root"])
        expect(page.locator("#proof-steps li.ok")).to_have_count(5)
        shot(page, "transparency-checked")

        # The browser's derivation on the golden draws (one takes the rejection branch).
        for _, seed, root, x, (word, block, index), number in GOLDEN:
            derived = page.evaluate(
                "([o, r, n, root, seed]) => LotteryProof.deriveDraw(o, r, n, root, seed)",
                [ORIGIN, 1, 4, b64.encode(bytes.fromhex(root)), b64.encode(bytes.fromhex(seed))],
            )
            assert derived == {"x": x, "word": word, "block": block, "index": index, "number": number}

        # The same page, its data altered on the way: a wrong seed, then a wrong number.
        state = api.get("/operator/state").json()
        assert state["draw"] == draw and state["log"] == drawn["log"]
        wrong_seed = b64.encode(bytes([b64.decode(draw["seed"])[0] ^ 1]) + b64.decode(draw["seed"])[1:])
        wrong_number = (draw["winning_number"] + 1) % 10_000
        # The wrong seed fails its commitment, and the number too unless it happens to give the same.
        same = draw_module.winning_number(
            vkey.split("+")[0], 2, draw["size"], b64.decode(draw["root"]), b64.decode(wrong_seed)
        )
        for name, altered, says, failed in (
            (
                "seed",
                {"draw": {**draw, "seed": wrong_seed}},
                f", but the round opened with the commitment {opened['seed_commitment']}",
                1 + (same != draw["winning_number"]),
            ),
            (
                "number",
                {"draw": {**draw, "winning_number": wrong_number}, "winning_number": wrong_number},
                f"= {draw['winning_number']}, but the published winning number is {wrong_number}",
                1,
            ),
        ):
            page.unroute("**/operator/events")
            page.route("**/operator/events", serving("data: " + json.dumps({**state, **altered}) + "\n\n"))
            page.reload()
            expect(testid("proof-verdict")).to_contain_text(says)
            expect(testid("proof-verdict")).to_have_text(re.compile(r"^mismatch: "))
            expect(page.locator("#proof-steps li.bad")).to_have_count(failed)
            shot(page, f"transparency-wrong-{name}")
    assert_only_loopback(page.requested)
    assert page.errors == []


def serving(event: str):
    """A route handler answering the page's event stream with ``event`` (the stream then ends:
    the page reconnects a second later and gets it again)."""
    return lambda route: route.fulfill(status=200, content_type="text/event-stream", body=event)
