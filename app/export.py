"""``python -m app.export [--round N] [--out bets.csv]``: one round's bets as the course's bets.csv.

With ``LOTTERY_DATABASE_URL`` set, from the database; else from the data dir given by
``--data-dir`` or ``LOTTERY_DATA_DIR``, or the server's default ``./data`` (where each
round's ``rounds/NNNN/bets.csv`` already is that file: this copies its committed part). The
current round unless ``--round``. The format is the course's (``agency,first_name,last_name,
document,birthdate,number``, csv-module quoting, LF), in stored order, so
``app.domain.load_bets`` reads the same rows. The file appears whole or not at all (written
to a temporary name, then renamed). Exit codes: 0 done, 1 storage error or no such round,
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.atomicfile import write_atomically
from app.settings import DEFAULT_DATA_DIR


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
    url = args.database_url or os.environ.get("LOTTERY_DATABASE_URL") or None
    # The server's default when neither is set: run from where the server ran, it finds its files.
    data_dir = Path(args.data_dir or os.environ.get("LOTTERY_DATA_DIR") or DEFAULT_DATA_DIR)
    if args.round is not None and args.round < 1:
        print("lottery export: --round must be 1 or more", file=sys.stderr)
        return 2
    if not url:
        return export_files(data_dir, args.round, args.out)

    import psycopg

    from app.store.postgres import CONNECT_TIMEOUT, export_bets

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('lottery_bets') IS NULL").fetchone()[0]:
                print(
                    "lottery export: the database has no lottery tables (no server has run on it yet)", file=sys.stderr
                )
                return 1
            if (
                args.round is not None
                and not conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM lottery_round WHERE id = %s)", (args.round,)
                ).fetchone()[0]
            ):
                print(f"lottery export: round {args.round} does not exist", file=sys.stderr)
                return 1
            if args.out == "-":
                bets = export_bets(conn, sys.stdout.buffer, args.round)
                sys.stdout.buffer.flush()
            else:
                bets = write_atomically(
                    Path(args.out).resolve(), lambda f: export_bets(conn, f, args.round), mode=0o644
                )
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"lottery export: database error: {first}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"lottery export: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"lottery export: {bets} bets -> {args.out}", file=sys.stderr)
    return 0


def export_files(data_dir: Path, round_id: int | None, out: str) -> int:
    """Copy the committed part of one round's bets.csv (read only: no lock, no repair)."""
    from app.store.files import BETS, LEDGER, round_dir, round_ids

    ids = round_ids(data_dir)
    if not ids:
        print(
            f"lottery export: {data_dir} holds no round (no server has run on it yet; "
            "set LOTTERY_DATA_DIR or --data-dir, or LOTTERY_DATABASE_URL for PostgreSQL)",
            file=sys.stderr,
        )
        return 1
    round_id = ids[-1] if round_id is None else round_id
    folder = round_dir(data_dir, round_id)
    if round_id not in ids:
        print(f"lottery export: round {round_id} does not exist in {data_dir}", file=sys.stderr)
        return 1
    try:
        end = committed_end(folder / LEDGER)
        with open(folder / BETS, "rb") if end else open(os.devnull, "rb") as source:
            data = source.read(end)
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            write_atomically(Path(out).resolve(), lambda f: f.write(data), mode=0o644)
    except OSError as error:
        print(f"lottery export: {error.filename or out}: {error.strerror or error}", file=sys.stderr)
        return 1
    bets = data.count(b"\n")  # no field may hold a newline: one line, one bet
    print(f"lottery export: {bets} bets of round {round_id} -> {out}", file=sys.stderr)
    return 0


def committed_end(ledger: Path) -> int:
    """The committed size of bets.csv: ``end`` of the ledger's last whole line (0 without one)."""
    import orjson

    try:
        data = ledger.read_bytes()
    except FileNotFoundError:
        return 0
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return int(orjson.loads(lines[-1])["end"]) if lines else 0


if __name__ == "__main__":
    sys.exit(main())
