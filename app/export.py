"""``python -m app.export [--out bets.csv]``: the course's bets.csv, from the PostgreSQL backend.

With the file backend, ``bets.csv`` in ``LOTTERY_DATA_DIR`` already is that file. With
``LOTTERY_DATABASE_URL`` set, this writes the same format (``agency,first_name,last_name,
document,birthdate,number``, csv-module quoting, LF) in stored order, so the course's
``app.domain.load_bets`` reads the same rows. The file appears whole or not at all (written
to a temporary name, then renamed). Exit codes: 0 done, 1 database error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.atomicfile import write_atomically


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.export",
        description="Write the round's bets from the PostgreSQL backend as the course's bets.csv.",
    )
    parser.add_argument("--out", default="bets.csv", help="file to write, or - for stdout (default: bets.csv)")
    parser.add_argument("--database-url", default=None, help="default: LOTTERY_DATABASE_URL")
    args = parser.parse_args(argv)
    url = args.database_url or os.environ.get("LOTTERY_DATABASE_URL") or None
    if not url:
        print(
            "lottery export: LOTTERY_DATABASE_URL is not set (with the file backend, bets.csv is already in "
            "LOTTERY_DATA_DIR)",
            file=sys.stderr,
        )
        return 2

    import psycopg

    from app.store.postgres import CONNECT_TIMEOUT, export_bets

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('lottery_bets') IS NULL").fetchone()[0]:
                print(
                    "lottery export: the database has no lottery tables (no server has run on it yet)", file=sys.stderr
                )
                return 1
            if args.out == "-":
                bets = export_bets(conn, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                bets = write_atomically(Path(args.out).resolve(), lambda f: export_bets(conn, f), mode=0o644)
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"lottery export: database error: {first}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"lottery export: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"lottery export: {bets} bets -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
