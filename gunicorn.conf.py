"""Gunicorn settings for the lottery server: ``gunicorn -c gunicorn.conf.py``.

Gunicorn's own knobs still win over this file: ``GUNICORN_CMD_ARGS="--bind 127.0.0.1:8123
--workers 4"`` and ``WEB_CONCURRENCY`` work as gunicorn documents them.
"""

import os
import shutil
import sys
import tempfile

wsgi_app = "app.main:app"
# uvicorn_worker.UvicornWorker plus connection bounds counted from accept and deadlines for
# request heads and bodies (slowloris, silent connections): app/worker.py
worker_class = "app.worker.LotteryWorker"
bind = ["127.0.0.1:8000"]

# One async worker per core, and at least 2. Each uvicorn worker is an event loop that
# overlaps network I/O on its own, so more processes than cores buys nothing for I/O;
# the CPU work (parsing and validating bets) wants one process per core; and all writes
# serialize on one file lock, so extra workers would only add lock contention. Two is
# the floor so that one busy worker (a 16 MiB chunk) never stalls the service.
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, os.cpu_count() or 1)))

# A chunk at the body limit plus its fsync can take a few seconds on a slow disk.
timeout = 60
graceful_timeout = 30
keepalive = 5

# HTTPS with gunicorn's own TLS (the uvicorn worker takes these over): a PEM certificate
# (chain) and its key, from LOTTERY_TLS_CERT and LOTTERY_TLS_KEY; checked in on_starting.
certfile = os.environ.get("LOTTERY_TLS_CERT") or None
keyfile = os.environ.get("LOTTERY_TLS_KEY") or None

# Gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which
# two servers on one machine (tests, the two-host setup) would fight over. We do not use it.
control_socket_disable = True


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    """Validate settings and tokens once in the master: a bad value stops with one line, not N tracebacks."""
    _prepare_metrics_dir()  # first: preflight imports the store, which imports prometheus_client
    from app.preflight import preflight

    try:
        settings = preflight()
        # The CSV validator (~0.2 s of CPU) is built once here and inherited by every worker,
        # not by each worker on its first chunk (app/csv_fast.py prepare).
        from app import logs
        from app.csv_fast import prepare

        logs.configure(settings.log_level)
        prepare()
    finally:
        sys.stderr.flush()


# -- Prometheus multiprocess mode (app/metrics.py) ----------------------------------------
# Workers write their metrics to files in PROMETHEUS_MULTIPROC_DIR and a scrape sums them.
# The variable is set here, in the master, before the first fork and before anything imports
# prometheus_client (which picks its storage at import), so every worker inherits it. The
# directory must start empty: old files would add a previous run's counts.
_created_metrics_dir = None
_METRICS_PREFIX = "lottery-metrics-"


def _prepare_metrics_dir():
    global _created_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        _sweep_abandoned_metrics_dirs()
        # The master's pid in the name: a later start can tell whether its master still runs.
        path = _created_metrics_dir = tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):  # only prometheus_client's files: the directory may be shared
            os.unlink(os.path.join(path, name))


def _sweep_abandoned_metrics_dirs():
    """Remove the temporary metrics dirs of masters that are gone: on_exit removes a master's
    own, but a SIGKILLed (or OOM-killed) master never runs it. A dir whose master runs stays."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid = name[len(_METRICS_PREFIX) :].split("-", 1)[0]
        if name.startswith(_METRICS_PREFIX) and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """A dead worker's live gauges go; its counters stay in the sums, as they must."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ARG001 - gunicorn's hook signature
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
