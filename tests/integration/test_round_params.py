"""A round keeps the parameters it started with (issue 9, item 3), against real gunicorn.

The reproduction: a round of 3 agencies, bets from all three (agency 3 has a winning bet),
agencies 1 and 2 done; the server restarted with ``LOTTERY_AGENCIES=2`` (a typo, a regenerated
compose file). The old release drew at the first ``/status`` with agencies 1 and 2, never
reported agency 3's winner and refused its bets with 409.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from devtools.server import Server
from tests.helpers import without_log

WINNING = 7574
CSV = {"Content-Type": "text/csv"}


def bets(agency: int, n: int, winners: set[int] = frozenset(), first: int = 0) -> bytes:
    return "".join(
        f"Ana {i},Gómez,{agency}{i:07d},1990-01-01,{WINNING if i in winners else i % 1000}\n"
        for i in range(first, first + n)
    ).encode()


def test_a_restart_with_fewer_agencies_keeps_the_round_and_draws_only_when_all_are_done(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data, workers=2, agencies=3) as first:
        for agency in (1, 2, 3):
            r = httpx.post(
                f"{first.url}/agencies/{agency}/bets",
                content=bets(agency, 5, {3} if agency == 3 else set()),
                headers=CSV,
            )
            assert r.status_code == 201, r.text
        for agency in (1, 2):
            assert httpx.post(f"{first.url}/agencies/{agency}/done").json()["drawn"] is False

    with Server(data, workers=3, agencies=2) as restarted:
        url = restarted.url
        assert httpx.get(f"{url}/status").json() == {"expected": 3, "done_count": 2, "drawn": False, "bets": 15}
        assert httpx.get(f"{url}/agencies/1/winners").status_code == 425
        more = httpx.post(f"{url}/agencies/3/bets", content=bets(3, 2, {5}, first=5), headers=CSV)
        assert (more.status_code, without_log(more.json())) == (201, {"agency": 3, "stored": 2})
        done = httpx.post(f"{url}/agencies/3/done").json()
        assert done == {"agency": 3, "done": 3, "expected": 3, "drawn": True}
        assert httpx.get(f"{url}/agencies/3/winners").json() == {"agency": 3, "winners": ["30000003", "30000005"]}
        assert httpx.get(f"{url}/agencies/1/winners").json() == {"agency": 1, "winners": []}
        log = restarted.log()
    # Said loudly, once (by the master, however many workers), naming both values.
    warnings = [line for line in log.splitlines() if "the round in progress was started with" in line]
    assert len(warnings) == 1, log
    assert "LOTTERY_AGENCIES=3" in warnings[0] and "LOTTERY_AGENCIES=2" in warnings[0]
    assert log.count("action: sorteo | result: success") == 1


def test_a_restart_with_more_agencies_refuses_the_ones_outside_the_round(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data, workers=2, agencies=2, env={"LOTTERY_WINNING_NUMBER": str(WINNING)}):
        pass
    with Server(data, workers=2, agencies=4, env={"LOTTERY_WINNING_NUMBER": "1"}) as restarted:
        r = httpx.post(f"{restarted.url}/agencies/3/bets", content=bets(3, 1), headers=CSV)
        assert r.status_code == 404 and "agencies are 1 to 2" in r.json()["detail"]
        r = httpx.post(f"{restarted.url}/agencies/2/bets", content=bets(2, 4, {1}), headers=CSV)
        assert r.status_code == 201
        for agency in (1, 2):
            httpx.post(f"{restarted.url}/agencies/{agency}/done")
        assert httpx.get(f"{restarted.url}/agencies/2/winners").json()["winners"] == ["20000001"]  # 7574, not 1
