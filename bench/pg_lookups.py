"""What schema version 4 chose between, measured (issue 21): per-request reads with N agencies.

- who is done: ``count(*)`` of the round's ``lottery_done`` rows (an index-only scan once the
  table is vacuumed, a heap scan before) against the ``done_count`` column of its round row;
- an agency's winners: ``winners -> 'agency'`` of one jsonb value holding every agency's
  documents (PostgreSQL detoasts the whole value to read one key) against one row of
  ``lottery_winners``.

Each query runs ``--queries`` times on one connection (a round trip each, as a request pays);
the figure is the median microseconds per query. A fresh database is made and dropped.

    python -m bench.pg_lookups [--agencies 10,1000,10000] [--queries 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import orjson

from bench.pg_round import bench_database_url, round_database

DOCUMENTS_PER_AGENCY = 3  # a winners list of a few documents, as a round of 60 bets per agency gives


def _time(conn, query: str, params: tuple, queries: int) -> float:
    times = []
    for _ in range(queries):
        started = time.perf_counter()
        conn.execute(query, params).fetchone()
        times.append(time.perf_counter() - started)
    return round(1e6 * statistics.median(times), 1)


def measure(agencies: int, queries: int) -> dict:
    import psycopg

    from app.store.postgres import SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4

    with round_database(bench_database_url()) as url, psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA + SCHEMA_V2 + SCHEMA_V3 + SCHEMA_V4:
            conn.execute(statement)
        conn.execute("UPDATE lottery_round SET agencies = %s", (agencies,))
        conn.execute("INSERT INTO lottery_done (round, agency) SELECT 1, g FROM generate_series(1, %s) g", (agencies,))
        winners = {str(a): [f"{a:05d}{d:03d}" for d in range(DOCUMENTS_PER_AGENCY)] for a in range(1, agencies + 1)}
        conn.execute("UPDATE lottery_round SET drawn = true, winners = %s::jsonb", (orjson.dumps(winners).decode(),))
        with conn.cursor().copy("COPY lottery_winners (round, agency, documents) FROM STDIN") as copy:
            for agency, documents in winners.items():
                copy.write_row((1, int(agency), documents))
        agency = str(agencies // 2 + 1)
        row = {
            "agencies": agencies,
            "count_done_rows_us": _time(conn, "SELECT count(*) FROM lottery_done WHERE round = %s", (1,), queries),
        }
        conn.execute("VACUUM ANALYZE lottery_done")
        row["count_done_rows_vacuumed_us"] = _time(
            conn, "SELECT count(*) FROM lottery_done WHERE round = %s", (1,), queries
        )
        row["done_count_column_us"] = _time(conn, "SELECT done_count FROM lottery_round WHERE id = %s", (1,), queries)
        row["winners_jsonb_key_us"] = _time(
            conn, "SELECT winners -> %s FROM lottery_round WHERE id = %s", (agency, 1), queries
        )
        row["winners_row_us"] = _time(
            conn,
            "SELECT documents FROM lottery_winners WHERE round = %s AND agency = %s",
            (1, int(agency)),
            queries,
        )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_lookups", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agencies", default="10,1000,10000")
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args(argv)
    for agencies in (int(n) for n in args.agencies.split(",")):
        print(json.dumps(measure(agencies, args.queries)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
