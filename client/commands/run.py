"""``run``: upload the file in chunks, say done, wait for the draw and print the winners."""

from __future__ import annotations

import logging
import os
import time

from client import commands, rounds
from client.http import ClientError
from client.winners import print_winners, wait_for_winners

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options

log = logging.getLogger("client")


def main(options: Options, stop: threading.Event) -> int:
    from client.progress import Progress
    from client.receipts import default_path
    from client.upload import Uploader

    assert options.agency is not None and options.file is not None  # required: checked before
    server = commands.api(options, stop)
    progress = None if options.quiet else Progress(options.agency)
    try:
        if not os.path.exists(options.file):  # said before any request, as the upload itself would
            raise ClientError(f"bets file not found: {options.file}")
        api = rounds.target(server, options.agency, options.round)
        scanned = None
        if not options.again and api.round not in (None, 1):
            from client.upload import scan

            scanned = scan(options.file)  # reused by the upload: the file is read and checked once
            rounds.refuse_repeat(api, options.agency, options.upload_id or scanned.upload_id, scanned.bets)
        started = time.monotonic()
        uploader = Uploader(
            api,
            options.agency,
            options.file,
            options.batch_size,
            options.concurrency,
            options.upload_id,
            progress,
            another_file=options.another_file,
            scanned=scanned,
            closed=rounds.drawn_reason(api),
            receipts=options.receipts or default_path(options.file),
        )
        total = uploader.run()
        if progress:
            progress.close()
        elapsed = time.monotonic() - started
        log.info(
            "action: carga | result: success | agencia: %d | apuestas: %d | enviadas: %d | segundos: %.2f",
            options.agency,
            total,
            uploader.sent,
            elapsed,
        )
        done = api.request("POST", f"/agencies/{options.agency}/done").json()
        log.info(
            "action: fin_carga | result: success | agencia: %d | finalizadas: %d/%d",
            options.agency,
            done["done"],
            done["expected"],
        )
        winners = wait_for_winners(api, options.agency, options.timeout, wait=True)
        print_winners(options.agency, winners, options.json)
        return 0
    finally:
        if progress:
            progress.close()
        server.close()
