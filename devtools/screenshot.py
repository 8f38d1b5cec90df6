"""The README's picture of the operator's page, taken from a real run: ``python -m devtools.screenshot``.

Round 1 runs whole on the course's dataset (``../shared/dataset``, five agencies, drawn);
the operator opens round 2 with three agencies; two of them upload generated files and say
done, the third has not started. Then Debian's chromium (driven by Playwright, never
downloaded) opens ``/`` and the page is saved to ``docs/img/operator-page.png`` (or
``--out``). Nothing on the page is typed in: every figure is what the server counted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from client.generate import generate
from devtools.demo import run_uploaders
from devtools.server import ROOT, Server

DATASET = ROOT.parent / "shared" / "dataset"
CHROMIUM = Path("/usr/bin/chromium")
BETS_2 = 60_000  # per agency of round 2
# The flags the browser test uses: a closed network refuses chromium's background requests.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "operator-page.png")
    args = parser.parse_args(argv)
    files = sorted(DATASET.glob("agency-*.csv"))
    if not files or not CHROMIUM.exists():
        print(f"needs {DATASET}/agency-*.csv and {CHROMIUM}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright  # a dev tool: not needed by the server

    with tempfile.TemporaryDirectory(prefix="lottery-shot-") as tmp:
        work = Path(tmp)
        with Server(work / "data", workers=2, agencies=len(files), log_path=work / "server.log") as server:
            if any(code for _, code in run_uploaders(server, files)):
                print(f"round 1 failed; server log: {server.log()[-2000:]}", file=sys.stderr)
                return 1
            httpx.post(f"{server.url}/rounds", json={"agencies": 3, "winning_number": 7574}).raise_for_status()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                page.goto(server.url + "/")  # open before round 2's bets arrive: the rate chart shows them
                page.locator("#past table").wait_for(timeout=10_000)
                # Two of round 2's three agencies upload and say done; the draw waits for the third,
                # so these uploaders stop waiting for it after a second (and exit non-zero).
                for agency, path in enumerate(generate(work / "round-2", 2, BETS_2, seed=2), 1):
                    command = ["run", "--agency", str(agency), "--file", str(path), "--timeout", "1"]
                    subprocess.run(
                        [sys.executable, "-m", "client", *command, "--server", server.url], capture_output=True
                    )
                done = httpx.get(f"{server.url}/rounds/2/agencies", params={"state": "done"}).json()["agencies"]
                if done != [1, 2]:
                    print(f"round 2: done {done}, not [1, 2]; server log: {server.log()[-2000:]}", file=sys.stderr)
                    return 1
                page.get_by_text(f"{2 * BETS_2:,} bets stored").wait_for(timeout=10_000)  # the page caught up
                page.wait_for_timeout(2000)  # and its chart drew the last seconds
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
