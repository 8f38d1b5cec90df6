"""``python -m app.export [--round N] [--out bets.csv]``: one round's bets as the course's bets.csv.

With ``LOTTERY_DATABASE_URL`` set, from the database; else from the data dir given by
``--data-dir`` or ``LOTTERY_DATA_DIR``, or the server's default ``./data``. The bets are the
store's (``Store.export_bets``: the committed part of the round's ``bets.csv``, or PostgreSQL's
rows in stored order), so an export reads what the server reads. The current round unless
``--round``. The format is the course's (``agency,first_name,last_name,document,birthdate,
number``, csv-module quoting, LF), so ``app.domain.load_bets`` reads the same rows. The file
appears whole or not at all (written to a temporary name, then renamed). A storage where no
server has run yet is said so, and nothing is created in it. Exit codes: 0 done, 1 storage
error or no such round, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from app.atomicfile import write_atomically
from app.rounds import RoundNotFound
from app.settings import DEFAULT_DATA_DIR, Settings
from app.store import StoreError, open_store, stored_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.export",
        description="Write one round's bets (PostgreSQL or the data dir) as the course's bets.csv.",
    )
    parser.add_argument("--round", type=int, default=None, help="the round to export (default: the current one)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"the file backend's data dir (default: LOTTERY_DATA_DIR, else the server's ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--out", default="bets.csv", help="file to write, or - for stdout (default: bets.csv)")
    parser.add_argument("--database-url", default=None, help="default: LOTTERY_DATABASE_URL")
    args = parser.parse_args(argv)
    if args.round is not None and args.round < 1:
        print("lottery export: --round must be 1 or more", file=sys.stderr)
        return 2
    url = args.database_url or os.environ.get("LOTTERY_DATABASE_URL") or None
    # The server's default when neither is set: run from where the server ran, it finds its files.
    data_dir = Path(args.data_dir or os.environ.get("LOTTERY_DATA_DIR") or DEFAULT_DATA_DIR)
    try:
        settings = Settings(data_dir=data_dir, database_url=url)
    except ValidationError as error:
        print(f"lottery export: invalid setting: {error.errors()[0]['msg']}", file=sys.stderr)
        return 2
    recorded, _ = stored_round(settings)
    if recorded is None:
        where = "the database" if url else str(data_dir)
        print(
            f"lottery export: {where} holds no round (no server has run on it yet; "
            "set LOTTERY_DATA_DIR or --data-dir, or LOTTERY_DATABASE_URL for PostgreSQL)",
            file=sys.stderr,
        )
        return 1
    store = open_store(settings, signing=False)  # reads only: no log key needed on PostgreSQL
    try:
        if args.out == "-":
            round_id, bets = store.export_bets(sys.stdout.buffer, args.round)
            sys.stdout.buffer.flush()
        else:
            round_id, bets = write_atomically(
                Path(args.out).resolve(), lambda f: store.export_bets(f, args.round), mode=0o644
            )
    except RoundNotFound:
        print(f"lottery export: round {args.round} does not exist", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"lottery export: storage error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"lottery export: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"lottery export: {bets} bets of round {round_id} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
