"""Gunicorn settings for the lottery server: ``gunicorn -c gunicorn.conf.py``.

Gunicorn's own knobs still win over this file: ``GUNICORN_CMD_ARGS="--bind 127.0.0.1:8123
--workers 4"`` and ``WEB_CONCURRENCY`` work as gunicorn documents them.
"""

import os
import sys

wsgi_app = "app.main:app"
# uvicorn_worker.UvicornWorker plus a deadline for request headers (slowloris): app/worker.py
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
    from app.settings import preflight

    try:
        preflight()
    finally:
        sys.stderr.flush()
