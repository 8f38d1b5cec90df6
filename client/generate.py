"""Deterministic demo files in the course's format: ``agency-N.csv``, one bet a line."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

# The course's winning number. The server's own is app.domain.WINNING_NUMBER (the uploader
# never imports app/); tests/unit/test_one_source.py checks that the two agree.
WINNING_NUMBER = 7574

FIRST = [
    "Santiago",
    "Valentina",
    "Martina",
    "Lautaro",
    "Tiago",
    "Nicolás",
    "Agustín",
    "Camila",
    "Sofía",
    "Mateo",
    "Benjamín",
    "Joaquín",
    "Lucía",
    "Emilia",
    "María José",
    "Juan Pablo",
]
LAST = [
    "Lorca",
    "Zambrano",
    "Rivera",
    "Fornerón",
    "Hernández",
    "Agüero",
    "Álvarez",
    "Mamani",
    "Soto",
    "Saldaña",
    "Mejía",
    "O'Connor",
    "Pérez García",
    "Núñez",
    "Borges",
    "Leiva",
]
WINNER_SHARE = 0.0001  # a few planted winners per agency, on top of the 1-in-10,000 chance


def generate(out: Path, agencies: int, bets: int, seed: int, winning_number: int = WINNING_NUMBER) -> list[Path]:
    """Write ``bets`` bets per agency; the same seed always gives the same files."""
    # Imported here: `python -m client run` reads WINNING_NUMBER from this module, never writes files.
    import csv
    import random
    from datetime import date, timedelta

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    oldest = date(1940, 1, 1)
    span = (date(2006, 12, 31) - oldest).days
    paths = []
    for agency in range(1, agencies + 1):
        path = out / f"agency-{agency}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\r\n")  # CRLF, like the course's files
            for _ in range(bets):
                number = winning_number if rng.random() < WINNER_SHARE else rng.randrange(10_000)
                writer.writerow(
                    (
                        rng.choice(FIRST),
                        rng.choice(LAST),
                        str(rng.randrange(10_000_000, 45_000_000)),
                        (oldest + timedelta(days=rng.randrange(span))).isoformat(),
                        number,
                    )
                )
        paths.append(path)
    return paths
