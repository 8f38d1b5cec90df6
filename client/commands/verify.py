"""``verify``: check a round against the log's signed checkpoints, trusting only ``--log-key``."""

from __future__ import annotations

from client import commands

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options


def main(options: Options, stop: threading.Event) -> int:
    from client.receipts import default_path
    from client.verify import Verifier

    assert options.agency and options.file and options.round and options.log_key  # required: checked before
    server = commands.api(options, stop)
    try:
        report = Verifier(
            server,
            options.agency,
            options.file,
            options.round,
            options.log_key,
            options.receipts or default_path(options.file),
            options.upload_id,
        ).run()
    finally:
        server.close()
    if options.json:
        import json

        print(json.dumps({"agency": options.agency, "round": options.round, "file": options.file,
                          "status": report.status, "checks": report.checks}))  # fmt: skip
    else:
        print("\n".join(report.lines()))
    return report.status
