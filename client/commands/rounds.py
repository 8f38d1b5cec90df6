"""``rounds``: the lottery's rounds, newest first (client/rounds.py ``list_rounds``)."""

from __future__ import annotations

from client import commands
from client.rounds import list_rounds

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options


def main(options: Options, stop: threading.Event) -> int:
    api = commands.api(options, stop)
    try:
        return list_rounds(api, options.limit, options.json)
    finally:
        api.close()
