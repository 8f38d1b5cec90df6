"""``winners``: this agency's winners, at once or (``--wait``) when the draw happens."""

from __future__ import annotations

from client import commands, rounds
from client.winners import print_winners, wait_for_winners

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.http import Server
    from client.options import Options


def main(options: Options, stop: threading.Event) -> int:
    assert options.agency is not None  # required: checked before
    server = commands.api(options, stop)
    try:
        api: Server = server if options.round is None else rounds.target(server, options.agency, options.round)
        winners = wait_for_winners(api, options.agency, options.timeout, wait=options.wait)
    finally:
        server.close()
    print_winners(options.agency, winners, options.json)
    return 0
