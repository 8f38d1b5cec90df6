"""``make bench``: every benchmark in one run; prints tables and writes bench/results.json.

    python -m bench                      # everything (about 5 minutes on 2 cores)
    python -m bench --only rounds,draw   # some sections
    python -m bench --runs 3             # fewer repetitions

Sections:
  rounds   whole rounds, our uploader + server vs the raw-TCP reference (reference/rawtcp),
           alternated run by run, median of --runs: the course dataset and 1M synthetic bets
  scale    1M bets from 50 concurrent agencies against 1, 2 and 4 workers (uploader-sized chunks)
  agencies a round of 10, 500, 1,000 and 10,000 agencies x 60 bets, files and PostgreSQL, 4 workers, 200 connections:
           the round's time, each phase's rate and p99 (upload, done, winners), /status and the operator's
           state p99 during the round, done and winners against 500 agencies (issue 21)
  formats  JSON vs CSV bodies at chunk sizes 100 .. 10,000
  uploader whole 1M-bet rounds with the uploader's --batch-size and --concurrency varied
  uploader_cpu  the uploader's own CPU per bet, all in, for a 100k-bet file (bench/uploader_cpu.py)
  draw     the draw over 1M and 10M stored bets: seconds and peak RSS
  ranges   ms per chunk of one upload in 1-bet chunks, at first and after 30,000 stored ranges
  pg       the 1M-bet round on PostgreSQL, one and two hosts (needs a database)
  operator what 50 open operator pages cost the server (percent of a core)
  bounds   memory, /health latency and CPU under hostile load: held 16 MiB bodies, 4 MB chunks, polls
  cpu      server CPU per bet from /proc (1M bets, 5,000-bet CSV chunks) and the fixed cost of a request
  parts    the parts of a /bets request timed alone: validator, hashes, lock, fdatasync, thread hop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from devtools.server import ROOT, Server

DATASET = ROOT.parent / "shared" / "dataset"
RESULTS = ROOT / "bench" / "results.json"


def _machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def _synthetic(where: Path, agencies: int, bets_per_agency: int) -> dict[int, Path]:
    from client.generate import generate

    return dict(enumerate(generate(where, agencies, bets_per_agency, seed=11), 1))


def bench_rounds(runs: int) -> list[dict]:
    from bench.http_round import run_round as http_round
    from reference.rawtcp.round import run_round as tcp_round

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rounds-") as tmp:
        inputs = {}
        if (DATASET / "agency-1.csv").exists():
            inputs["course dataset (78,697 bets, 5 agencies)"] = (
                {a: DATASET / f"agency-{a}.csv" for a in range(1, 6)},
                0.8,
            )
        inputs["synthetic 1M bets, 10 agencies"] = (_synthetic(Path(tmp) / "1m", 10, 100_000), 0.4)
        for number, (name, (files, target)) in enumerate(inputs.items()):
            ours, theirs, cpu = [], [], []
            for run in range(runs):  # alternate, so drift in the machine's load hits both alike
                round_ = http_round(files, Path(tmp) / f"http-{number}-{run}" / "data")
                ours.append(round_["seconds"])
                cpu.append((round_["uploaders_cpu"], round_["server_cpu"]))
                theirs.append(tcp_round(files, Path(tmp) / f"tcp-{number}-{run}" / "data")["seconds"])
            ratio = statistics.median(ours) / statistics.median(theirs)
            rows.append(
                {
                    "input": name,
                    "http_s": statistics.median(ours),
                    "rawtcp_s": statistics.median(theirs),
                    "ratio": ratio,
                    "target": target,
                    "runs": runs,
                    "http_all": ours,
                    "rawtcp_all": theirs,
                    "uploaders_cpu_s": statistics.median(c[0] for c in cpu),
                    "server_cpu_s": statistics.median(c[1] for c in cpu),
                }
            )
            print(
                f"  {name}: ours {statistics.median(ours):.2f}s, raw TCP {statistics.median(theirs):.2f}s, "
                f"ratio {ratio:.2f}x (target <= {target}x); our CPU: uploaders {rows[-1]['uploaders_cpu_s']:.2f}s, "
                f"server {rows[-1]['server_cpu_s']:.2f}s",
                flush=True,
            )
    return rows


def bench_scale(bets_per_agency: int = 20_000, agencies: int = 50, chunk: int | None = None) -> list[dict]:
    from bench.load import run_load
    from client.config import DEFAULT_BATCH_SIZE

    chunk = chunk or DEFAULT_BATCH_SIZE  # the chunks the uploader sends

    rows = []
    for workers in (1, 2, 4):
        with (
            tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
            Server(Path(tmp) / "data", workers=workers, agencies=agencies) as server,
        ):
            result = run_load(server.url, agencies, bets_per_agency, chunk)
        rows.append({"workers": workers, "chunk": chunk, **result})
        print(
            f"  {workers} worker(s): {result['bets_per_s']:,.0f} bets/s, p50 {result['p50_ms']:.0f} ms, "
            f"p99 {result['p99_ms']:.0f} ms",
            flush=True,
        )
    return rows


def bench_formats(agencies: int = 10, bets_per_agency: int = 20_000) -> list[dict]:
    from bench.load import run_load

    rows = []
    for kind in ("csv", "json"):
        for chunk in (100, 1000, 2000, 5000, 10_000):
            with (
                tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp,
                Server(Path(tmp) / "data", workers=2, agencies=agencies) as server,
            ):
                result = run_load(server.url, agencies, bets_per_agency, chunk, kind)
            rows.append({"format": kind, "chunk": chunk, **result})
            print(
                f"  {kind:4} chunk {chunk:>6}: {result['bets_per_s']:,.0f} bets/s, p50 {result['p50_ms']:.0f} ms, "
                f"p99 {result['p99_ms']:.0f} ms",
                flush=True,
            )
    return rows


def bench_uploader(runs: int = 3) -> list[dict]:
    """What the uploader's defaults are chosen from: whole rounds, options varied."""
    from bench.http_round import run_round

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-uploader-") as tmp:
        files = _synthetic(Path(tmp) / "1m", 10, 100_000)
        small = {a: DATASET / f"agency-{a}.csv" for a in range(1, 6)} if (DATASET / "agency-1.csv").exists() else None
        for batch in (1000, 2000, 5000, 10_000):
            for concurrency in (1, 2, 4):
                args = ("--batch-size", str(batch), "--concurrency", str(concurrency))
                big = statistics.median(
                    run_round(files, Path(tmp) / f"r-{batch}-{concurrency}-{i}" / "data", uploader_args=args)["seconds"]
                    for i in range(runs)
                )
                row = {"batch_size": batch, "concurrency": concurrency, "round_1m_s": big}
                if small:
                    row["round_dataset_s"] = statistics.median(
                        run_round(small, Path(tmp) / f"s-{batch}-{concurrency}-{i}" / "data", uploader_args=args)[
                            "seconds"
                        ]
                        for i in range(runs)
                    )
                rows.append(row)
                print(
                    f"  --batch-size {batch:>6} --concurrency {concurrency}: 1M round {big:.2f}s"
                    + (f", dataset round {row['round_dataset_s']:.2f}s" if small else ""),
                    flush=True,
                )
    return rows


def bench_uploader_cpu(runs: int = 5) -> dict:
    from bench.uploader_cpu import bench_uploader_cpu as measure

    return measure(runs)


def bench_draw() -> list[dict]:
    from bench.draw import make_round, measure

    rows = []
    for bets in (1_000_000, 10_000_000):
        with tempfile.TemporaryDirectory(prefix="bench-draw-") as tmp:
            make_round(Path(tmp), bets)
            result = measure(Path(tmp))
        rows.append({"bets": bets, **result})
        print(
            f"  {bets:>10,} bets ({result['file_mb']:.0f} MB): {result['seconds']:.2f}s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return rows


def bench_ranges() -> list[dict]:
    from bench.ranges import measure

    result = measure()
    print(
        f"  one upload in 1-bet chunks ({result['storage']}): {result['ms_per_chunk_first']:.3f} ms per chunk at "
        f"first, {result['ms_per_chunk_after']:.3f} ms after {result['chunks_stored_before_last_window']:,} ranges",
        flush=True,
    )
    return [result]


def bench_pg() -> list[dict]:
    from bench.pg_round import bench_database_url
    from bench.pg_round import run as pg_run

    try:
        import psycopg

        psycopg.connect(bench_database_url(), connect_timeout=3).close()
    except Exception as error:  # no database here: say so and go on with the rest
        print(f"  skipped: PostgreSQL not reachable at {bench_database_url()} ({error}); run .ci/postgres.sh")
        return []
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        rows = pg_run(Path(tmp))
    for row in rows:
        print(
            f"  1M bets, {row['hosts']} host(s) x {row['workers_per_host']} workers: {row['seconds']:.1f}s = "
            f"{row['bets_per_s']:,} bets/s",
            flush=True,
        )
    return rows


def bench_operator() -> list[dict]:
    from bench.operator_page import run

    row = run()
    print(
        f"  {row['pages']} operator pages: {row['pages_cost_core_percent']:.1f}% of a core "
        f"({row['with_pages_core_percent']:.1f}% with, {row['baseline_core_percent']:.1f}% without; "
        f"{row['updates_per_page_per_s']:.2f} updates/page/s)",
        flush=True,
    )
    return [row]


def bench_cpu() -> dict:
    from bench.server_cpu import main as server_cpu

    return server_cpu([])


SECTIONS = {
    "rounds": bench_rounds,
    "scale": bench_scale,
    "agencies": lambda: __import__("bench.agency_scale", fromlist=["run"]).run(),  # bench/agency_scale.py
    "formats": bench_formats,
    "uploader": bench_uploader,
    "uploader_cpu": bench_uploader_cpu,
    "draw": bench_draw,
    "ranges": bench_ranges,
    "pg": bench_pg,
    "operator": bench_operator,
    "bounds": lambda: __import__("bench.load_bounds", fromlist=["run"]).run(),  # bench/load_bounds.py
    "cpu": bench_cpu,
    "parts": lambda: __import__("bench.server_parts", fromlist=["main"]).main(),  # bench/server_parts.py
    "small": lambda: __import__("bench.small_requests", fromlist=["main"]).main([]),  # one-bet POSTs with wrk
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--runs", type=int, default=5, help="runs per round benchmark (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict = {"machine": _machine()}
    print(
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"Python {results['machine']['python']}"
    )
    for name in args.only.split(","):
        print(f"\n[{name}]", flush=True)
        results[name] = (
            SECTIONS[name](args.runs) if name in ("rounds", "uploader", "uploader_cpu") else SECTIONS[name]()
        )
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
