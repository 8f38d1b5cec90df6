"""What gunicorn's master checks once, before it forks a worker (``gunicorn.conf.py``): the
settings, the data dir, TLS files, the tokens file, and whether the round in progress was
opened with other settings. A bad one stops the server with one line and exit 2, never a
traceback per worker. Kept apart from app/settings.py, which the store imports: this module
imports the store (to read the round in progress), so settings and store import no circle.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.settings import Settings, data_dir_problem, load_or_exit, tls_problem
from app.store import round_settings_warning

if TYPE_CHECKING:
    from tlog import note


def preflight() -> Settings:
    """What gunicorn's master checks once before forking workers: settings, data dir and tokens file."""
    from app.tokens import Tokens, TokensError  # the master's only need of tokens: imported here

    settings = load_or_exit()
    if settings.database_url is None and (problem := data_dir_problem(settings.data_dir)):
        print(f"lottery: invalid setting: LOTTERY_DATA_DIR={str(settings.data_dir)!r}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if settings.database_url is None:
        check_log(settings)
    else:
        check_pg_log(settings)
    if warning := round_settings_warning(settings):
        print(warning, file=sys.stderr)
    if settings.tls_cert is not None and settings.tls_key is not None:
        problem = tls_problem(settings.tls_cert, settings.tls_key)
        if problem:
            print(f"lottery: invalid setting: LOTTERY_TLS_CERT/LOTTERY_TLS_KEY: {problem}", file=sys.stderr)
            raise SystemExit(2)
    if settings.tokens_file is None:
        print(
            "lottery: WARNING: LOTTERY_TOKENS_FILE is not set: the agency routes are OPEN, any client "
            "may act for any agency. Generate tokens with `python -m app.tokens` for real use.",
            file=sys.stderr,
        )
        return settings
    try:
        Tokens.load(settings.tokens_file, settings.agencies)
    except TokensError as error:
        print(f"lottery: invalid setting: LOTTERY_TOKENS_FILE: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def _signer(settings: Settings) -> note.Signer:
    from app.store import log_signer
    from app.store.txlog import LogKeyError

    try:
        return log_signer(settings)
    except (LogKeyError, OSError) as error:
        print(f"lottery: invalid setting: LOTTERY_LOG_KEY_FILE: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def check_pg_log(settings: Settings) -> None:
    """The PostgreSQL backend's transparency log: its key (made at its default place on the first
    start; every host must share it), then the log in the database against its checkpoints and the
    current round (app/store/pg_log_check.py). A database that does not answer yet is the workers'
    to report (503 until it does): not checked here."""
    from app.store.log_check import LogMismatch
    from app.store.pg_log_check import check_pg_log as check

    signer = _signer(settings)
    assert settings.database_url is not None
    try:
        size = check(settings.database_url, signer, settings.log_origin)
    except LogMismatch as error:
        print(f"lottery: refusing to start: the transparency log does not match: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    found = "not checked (the database does not answer yet)" if size is None else f"{size} leaves"
    print(
        f"lottery: transparency log {settings.log_origin} in the database: {found}; "
        f"verifier key {signer.verifier().vkey()}",
        file=sys.stderr,
    )


def check_log(settings: Settings) -> None:
    """The files backend's transparency log: its key (made at its default place on the first
    start), then the log against its checkpoints and the current round (app/store/log_check.py)."""
    from app.store.log_check import LedgerUnreadable, LogMismatch, check_files_log
    from app.store.txlog import LogKeyError, load_signer

    try:
        signer = load_signer(settings.log_key_path, settings.log_origin, create=settings.log_key_file is None)
    except LogKeyError as error:
        print(f"lottery: invalid setting: LOTTERY_LOG_KEY_FILE: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        size = check_files_log(settings.data_dir, signer, settings.log_origin)
    except LogMismatch as error:
        print(f"lottery: refusing to start: the transparency log does not match: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except LedgerUnreadable as error:
        # A corrupt file is the store's to report (503 naming it, the server up): not checked, not repaired.
        print(f"lottery: transparency log not checked: {error}; that round answers 503 until repaired", file=sys.stderr)
        return
    except OSError as error:
        print(f"lottery: refusing to start: cannot read the transparency log: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"lottery: transparency log {settings.log_origin}: {size} leaves; verifier key {signer.verifier().vkey()}",
        file=sys.stderr,
    )
