"""One whole round on our service, timed the same way as reference/rawtcp/round.py.

The server (gunicorn, default settings) is started first and is not timed; the clock runs
from launching every agency's uploader (`python -m client run`, its defaults, each a
separate program) to the exit of the last one, so it covers upload, done, draw and winners.
Beside the time, where the CPU went: the uploaders' (``getrusage`` of the waited-for children)
and the server workers' (``/proc``), over the same span. On a 2-core machine a round cannot
take less than their sum over 2.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.proc import cpu_seconds, rusage_seconds
from devtools.server import ROOT, Server


def run_round(
    files: dict[int, Path],
    data_dir: Path,
    *,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    servers: list[Server] | None = None,
    uploader_args: tuple[str, ...] = (),
) -> dict:
    """Time one round; ``servers`` (already running) lets a caller spread agencies over hosts.

    ``uploader_args`` are extra options for every uploader (e.g. another ``--batch-size``).
    """
    own = servers is None
    if own:
        servers = [
            Server(
                data_dir,
                workers=workers or 2,
                agencies=len(files),
                env=env,
                log_path=data_dir.parent / f"{data_dir.name}.log",
            ).start()
        ]
    try:
        workers = [pid for server in servers for pid in server.worker_pids()]
        server_cpu, uploaders_cpu = cpu_seconds(workers), rusage_seconds(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        procs = {
            agency: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "client",
                    "run",
                    "--agency",
                    str(agency),
                    "--file",
                    str(path),
                    "--server",
                    servers[(agency - 1) % len(servers)].url,
                    "--quiet",
                    "--json",
                    *uploader_args,
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for agency, path in files.items()
        }
        outputs = {agency: proc.communicate(timeout=600) for agency, proc in procs.items()}
        seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(workers) - server_cpu
        uploaders_cpu = rusage_seconds(resource.RUSAGE_CHILDREN) - uploaders_cpu
        for agency, proc in procs.items():
            if proc.returncode != 0:
                raise RuntimeError(f"agency {agency} exited {proc.returncode}: {outputs[agency][1].decode()[-2000:]}")
        winners = {agency: len(json.loads(out)["winners"]) for agency, (out, _) in outputs.items()}
        return {"seconds": seconds, "winners": winners, "uploaders_cpu": uploaders_cpu, "server_cpu": server_cpu}
    finally:
        if own:
            servers[0].stop()
