"""Progress of an upload: a bar on a terminal, course-style log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tqdm import tqdm

log = logging.getLogger("client")
LOG_EVERY = 5.0  # seconds between progress lines when not on a terminal


class Progress:
    def __init__(self, agency: int, tty: bool | None = None):
        self.agency = agency
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar: tqdm[Any] | None = None
        self._total = self._done = self._already = 0
        self._started = self._last_log = time.monotonic()

    def start(self, total: int, already: int) -> None:
        self._total, self._done, self._already = total, already, already
        self._started = self._last_log = time.monotonic()
        if self.tty:
            from tqdm import tqdm  # only on a terminal

            self._bar = tqdm(
                total=total,
                initial=already,
                unit="bets",
                unit_scale=True,
                desc=f"agency {self.agency}",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def advance(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            rate = (self._done - self._already) / max(now - self._started, 1e-9)  # this run's pace
            log.info(
                "action: progreso | result: in_progress | agencia: %d | enviadas: %d | total: %d | bets_s: %.0f",
                self.agency,
                self._done,
                self._total,
                rate,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
