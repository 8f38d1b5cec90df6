"""Waits on what a real server reports, polled (never a sleep standing in for an event)."""

from __future__ import annotations

import time

import httpx


def wait_for_bets(url: str, at_least: int, timeout: float = 60) -> int:
    """Until ``/status`` counts ``at_least`` stored bets (a server restarting in between is polled again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            bets = httpx.get(url + "/status", timeout=5).json()["bets"]
        except httpx.HTTPError:
            bets = -1
        if bets >= at_least:
            return bets
        time.sleep(0.02)
    raise TimeoutError(f"fewer than {at_least} bets stored after {timeout}s")
