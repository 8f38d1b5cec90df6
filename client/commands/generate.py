"""``generate``: deterministic demo files agency-1.csv ... agency-N.csv (client/generate.py)."""

from __future__ import annotations

from pathlib import Path

from client.generate import generate

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options


def main(options: Options, stop: threading.Event) -> int:  # noqa: ARG001 (every command's signature)
    assert options.out is not None  # argparse requires it
    for path in generate(Path(options.out), options.agencies, options.bets, options.seed, options.winning_number):
        print(path)
    return 0
