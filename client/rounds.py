"""Rounds for the uploader: which round a run targets, its routes, and ``python -m client rounds``.

``run`` learns the current round once, at start, and sends every request to that round's
routes (``/rounds/{round}/agencies/{agency}/...``): if the round is drawn and a next one opens
meanwhile, the server refuses the rest (409) and the uploader stops, saying so; it never puts
bets into a round it did not start in. A server of the one-round release (no ``/rounds``) is
used through its ``/agencies/...`` routes as before.
"""

from __future__ import annotations

import json
import logging

from client.http import ClientError, Rejected

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from httpx import Response

    from client.http import Api, Server

log = logging.getLogger("client")
EARLIER_ROUNDS_CHECKED = 10  # how far back `run` looks for the same file stored whole


class RoundApi:
    """The API with every agency route moved under one round; everything else as the wrapped one."""

    def __init__(self, api: Api, round_id: int | None, *, drawn: bool = False, newest: bool = False) -> None:
        self._api, self.round = api, round_id
        self.drawn = drawn  # the round was drawn when the command started
        self.newest = newest  # it was the server's newest round then (learned from /rounds, not --round)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        if self.round is not None and path.startswith("/agencies/"):
            path = f"/rounds/{self.round}{path}"
        try:
            return self._api.request(method, path, **kwargs)
        except Rejected as error:
            if error.status == 409 and self.round is not None:
                current = (
                    error.problem.get("current_round")
                    if error.problem.get("title") == "Not the current round"
                    else None
                )
                if (
                    current is None and method == "POST"
                ):  # e.g. "the draw has already happened": did a round open since?
                    current = self._newer_round()
                if current is not None:
                    raise ClientError(
                        f"round {self.round} is over and the server's current round is now {current}: this uploader "
                        f"stops, and sends nothing into round {current} (rerun it to upload into round {current})"
                    ) from None
            raise

    def _newer_round(self) -> int | None:
        """The server's current round when it is not this one (None when it is, or on any doubt)."""
        try:
            response = self._api.request("GET", "/rounds", params={"limit": 1}, ok=(200, 404))
            newest = response.json()["rounds"][0]["round"] if response.status_code == 200 else None
        except (ClientError, KeyError, IndexError, ValueError):
            return None
        return newest if newest is not None and newest != self.round else None


def target(api: Api, agency: int, round_id: int | None) -> RoundApi:
    """The round this command works on (the current one unless ``round_id``), announced on stderr."""
    wanted = f"/rounds/{round_id}" if round_id is not None else "/rounds"
    response = api.request("GET", wanted, params=None if round_id is not None else {"limit": 1}, ok=(200, 404))
    if response.status_code == 404:
        if round_id is not None and _knows_rounds(api):
            raise ClientError(f"round {round_id} does not exist on the server")
        if round_id is not None:
            raise ClientError("this server has a single round (no /rounds): run without --round")
        log.info("action: ronda | result: success | detail: the server has a single round")
        return RoundApi(api, None)
    info = response.json() if round_id is not None else response.json()["rounds"][0]
    # A drawn round still answers a rerun whose bets are all stored (done again, then the
    # winners); a run that has bets to send stops before sending them (drawn_reason).
    if not 1 <= agency <= info["agencies"]:
        raise ClientError(
            f"agency {agency} is not part of round {info['round']} (its agencies are 1 to {info['agencies']})"
        )
    log.info(
        "action: ronda | result: success | ronda: %d | estado: %s | agencias: %d",
        info["round"],
        info["state"],
        info["agencies"],
    )
    return RoundApi(api, info["round"], drawn=info["state"] == "drawn", newest=round_id is None)


def drawn_reason(api: RoundApi) -> str | None:
    """Why nothing may be sent into the round (it is drawn: every chunk would get 409), else None.

    A rerun of a file the round holds whole sends nothing, so it still says done and gets its winners."""
    if not api.drawn:
        return None
    newer = None if api.newest else api._newer_round()
    if newer is None:
        return f"round {api.round} is drawn: ask the operator to open the next one"
    return f"round {api.round} is drawn and round {newer} is open: run without --round to upload into round {newer}"


def _knows_rounds(api: Api) -> bool:
    return api.request("GET", "/rounds", params={"limit": 1}, ok=(200, 404)).status_code == 200


def refuse_repeat(api: RoundApi, agency: int, upload_id: str, bets: int) -> None:
    """Stop when this very file was already stored whole in an earlier round (``--again`` sends it anyway)."""
    if api.round is None or api.round == 1:
        return
    if api.request("GET", f"/agencies/{agency}/uploads/{upload_id}").json()["bets"]:
        return  # already begun in this round (with --again, or a rerun): a resume, not a repeat
    for earlier in range(api.round - 1, max(0, api.round - 1 - EARLIER_ROUNDS_CHECKED), -1):
        response = api._api.request("GET", f"/rounds/{earlier}/agencies/{agency}/uploads/{upload_id}", ok=(200, 404))
        if response.status_code == 200 and response.json()["committed"] == [[0, bets]]:
            raise ClientError(
                f"this file ({bets} bets, upload id {upload_id}) was already uploaded whole in round {earlier}: "
                f"not sending it again into round {api.round}. If these bets really play again, rerun with --again"
            )


def list_rounds(api: Server, limit: int, as_json: bool) -> int:
    """``python -m client rounds``: newest first, one line each (or the JSON of GET /rounds)."""
    response = api.request("GET", "/rounds", params={"limit": limit}, ok=(200, 404))
    if response.status_code == 404:
        raise ClientError("this server has a single round (no /rounds)")
    rounds = response.json()["rounds"]
    if as_json:
        print(json.dumps(rounds))
        return 0
    for r in rounds:
        done = r["done_count"] if "done_count" in r else len(r["done"])  # an earlier server listed them
        number = "random" if r["winning_number"] is None else r["winning_number"]
        winners = "" if r["winners"] is None else f", {r['winners']} winners"
        print(
            f"round {r['round']}: {r['state']}, {r['agencies']} agencies ({done} done), "
            f"{r['bets']} bets{winners}, winning number {number}, opened {r['opened_at']}"
            + (f", drawn {r['drawn_at']}" if r["drawn_at"] else "")
        )
    return 0
