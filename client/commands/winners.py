"""``winners``: this agency's winners, at once or (``--wait``) when the draw happens."""

from __future__ import annotations

from client import commands, rounds
from client.winners import print_winners, wait_for_winners

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options


def main(options: Options, stop: threading.Event) -> int:
    assert options.agency is not None  # required: checked before
    api = commands.api(options, stop)
    try:
        if options.round is not None:
            api = rounds.target(api, options.agency, options.round)
        winners = wait_for_winners(api, options.agency, options.timeout, wait=options.wait)
    finally:
        api.close()
    print_winners(options.agency, winners, options.json)
    return 0
