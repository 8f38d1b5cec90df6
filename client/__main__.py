"""``python -m client``: the agency's command line.

    run       upload a bets file in chunks, say done, wait for the draw, print the winners
    bet       send one bet (also from the course's NOMBRE, APELLIDO, ... variables)
    winners   read this agency's winners (``--wait`` polls until the draw)
    generate  write deterministic demo files agency-N.csv

Logs go to stderr in the course's format; winners go to stdout (``--json`` for JSON).
Exit codes: 0 done, 1 failed, 2 bad options, 130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import signal
import sys
import time

from client.config import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, ConfigError, Options, resolve
from client.generate import WINNING_NUMBER

log = logging.getLogger("client")
# The course's log line, as the server writes it (app/logs.py; the uploader never imports
# app/): tests/unit/test_one_source.py checks that the two agree.
LOG_FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


DESCRIPTION = (
    "The agency's uploader: upload a bets file in chunks (resumable, each bet stored exactly once), "
    "say done, wait for the draw and print this agency's winners."
)
WHERE_FROM = (
    "Every option can also come from the environment (LOTTERY_*) or a YAML --config file; the command line wins."
)


class _Formatter(argparse.HelpFormatter):
    """argparse's, with the terminal width read directly: its own way imports shutil (and with it
    bz2, lzma, ...) for every parser built, a few milliseconds of every run's start-up (issue 15)."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(sys.stdout.fileno()).columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width, 40) - 2)


COMMANDS = ("run", "bet", "winners", "rounds", "generate")
GC_THRESHOLDS = (20_000, 50, 50)  # see main()


class _Skipped:
    """Stands for the parser of a command this run is not, and takes its options (see _parser)."""

    def add_argument(self, *_args, **_kwargs) -> None:
        pass

    def add_argument_group(self, *_args, **_kwargs) -> _Skipped:
        return self


def _parser(prog: str = "python -m client", only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only`` (the command given), the parser of that command alone: the
    others, with their options, are most of the cost of building it, and parsing never reaches them
    (usage lines and errors name every command through the fixed metavar)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=WHERE_FROM, formatter_class=_Formatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        if only not in (None, name):
            return _Skipped()  # type: ignore[return-value]
        return commands.add_parser(
            name, help=summary, description=description, epilog=WHERE_FROM, formatter_class=_Formatter
        )

    def common(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        required = p.add_argument_group("required (on the command line, in the environment or in --config)")
        required.add_argument("--agency", type=int, help="agency id (env LOTTERY_AGENCY or CLI_ID)")
        p.add_argument("--server", help="server URL (env LOTTERY_SERVER; default http://127.0.0.1:8000)")
        p.add_argument("--token", help="bearer token (env LOTTERY_TOKEN)")
        p.add_argument("--token-file", help="file holding the bearer token (env LOTTERY_TOKEN_FILE)")
        p.add_argument("--cacert", help="CA certificate (PEM) to trust for an https server (env LOTTERY_CACERT)")
        p.add_argument(
            "--insecure",
            action="store_true",
            default=None,
            help="allow sending the token over plain http to a machine other than this one (env LOTTERY_INSECURE)",
        )
        p.add_argument("--config", help="YAML config file in the course's shape (env LOTTERY_CONFIG)")
        p.add_argument(
            "--retries",
            type=int,
            help="retries of a request after its first attempt fails on a transient error "
            "(default 10, so at most 11 attempts; env LOTTERY_RETRIES)",
        )
        p.add_argument("--quiet", action="store_true", default=None, help="only errors on stderr (env LOTTERY_QUIET)")
        return required

    run = command(
        "run",
        "upload a file, say done, wait for and print the winners",
        "Upload an agency's bets file in chunks, say done, wait for the draw and print the winners. "
        "Rerunning the same command resumes an interrupted upload; each bet is stored once.",
    )
    common(run).add_argument("--file", help="agency CSV file (env LOTTERY_BETS_FILE)")
    run.add_argument("--batch-size", type=int, help=f"bets per chunk (default {DEFAULT_BATCH_SIZE})")
    run.add_argument("--concurrency", type=int, help=f"chunks in flight (default {DEFAULT_CONCURRENCY})")
    run.add_argument("--timeout", type=float, help="seconds to wait for the draw (default 600)")
    run.add_argument("--upload-id", help="continue this upload (its id is printed when a chunk is rejected)")
    run.add_argument("--json", action="store_true", default=None, help="winners as JSON on stdout")
    run.add_argument(
        "--another-file",
        action="store_true",
        default=None,
        help="this file is not a new version of one already uploaded this round: store its bets as well",
    )

    bet = command(
        "bet",
        "send a single bet",
        "Send one bet. Each field can come from the course's environment variables "
        "NOMBRE, APELLIDO, DOCUMENTO, NACIMIENTO and NUMERO.",
    )
    common(bet)
    fields = bet.add_argument_group("the bet (required; each also from its environment variable)")
    fields.add_argument("--first-name", default=os.environ.get("NOMBRE"), help="first name (env NOMBRE)")
    fields.add_argument("--last-name", default=os.environ.get("APELLIDO"), help="last name (env APELLIDO)")
    fields.add_argument("--document", default=os.environ.get("DOCUMENTO"), help="document number (env DOCUMENTO)")
    fields.add_argument("--birthdate", default=os.environ.get("NACIMIENTO"), help="YYYY-MM-DD (env NACIMIENTO)")
    fields.add_argument("--number", default=os.environ.get("NUMERO"), help="the number bet on, 0-9999 (env NUMERO)")

    winners = command(
        "winners",
        "read this agency's winners",
        "Print this agency's winners; before the draw, fail at once, or wait for it with --wait.",
    )
    common(winners)
    winners.add_argument("--wait", action="store_true", default=None, help="wait until the draw (long poll)")
    winners.add_argument("--timeout", type=float, help="seconds to wait with --wait (default 600)")
    winners.add_argument("--json", action="store_true", default=None, help="winners as JSON on stdout")

    _round_options(run, winners, command, common)

    gen = command(
        "generate",
        "write deterministic demo files agency-N.csv",
        "Write demo agency files agency-1.csv ... agency-N.csv in the course's format; "
        "the same seed always writes the same files.",
    )
    gen.add_argument("--out", required=True, help="directory to write the files into")
    gen.add_argument("--agencies", type=int, default=5, help="how many agency files (default 5)")
    gen.add_argument("--bets", type=int, default=20_000, help="bets per agency (default 20000)")
    gen.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    gen.add_argument(
        "--winning-number",
        type=int,
        default=WINNING_NUMBER,
        help=f"the number some bets are planted with (default {WINNING_NUMBER})",
    )
    return parser


def _round_options(run, winners, command, common) -> None:
    """Rounds (issue 11): ``run --round N --again``, ``winners --round N``, ``rounds``."""
    run.add_argument("--round", type=int, help="upload into this round (default: the current one, learned at start)")
    run.add_argument("--again", action="store_true", help="send a file already stored whole in an earlier round")
    winners.add_argument("--round", type=int, help="the winners of this round (default: the current one)")
    listing = command(
        "rounds",
        "list the rounds, newest first",
        "List the lottery's rounds, newest first: state, agencies, bets, winners and dates "
        "(with tokens on, any valid token: the operator's or an agency's).",
    )
    common(listing)
    listing.add_argument("--limit", type=int, default=20, help="how many rounds (default 20)")
    listing.add_argument("--json", action="store_true", default=None, help="the rounds as JSON on stdout")


def _on_sigterm(stop, received: dict) -> None:
    """SIGTERM stops like Ctrl-C: in-flight chunks give up, the main thread unwinds at once."""

    def handler(signum, frame):  # noqa: ARG001
        received["signal"] = signum
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _api(options: Options, stop=None):
    from client.http import Api

    return Api(
        options.server,
        options.token,
        options.retries,
        options.request_timeout,
        stop,
        connections=options.concurrency,
        cacert=options.cacert,
        insecure=options.insecure,
    )


def wait_for_winners(api, agency: int, timeout: float, wait: bool) -> list[str]:
    """The agency's winners; with ``wait``, until the draw or ``timeout`` seconds."""
    from client.http import ClientError, retry_after

    deadline = time.monotonic() + timeout
    hold = 0  # the first ask is immediate: the draw may have happened already
    while True:
        # Long poll: the server holds the request up to `hold` seconds and answers the
        # moment the draw happens, so agencies learn it at once without hammering it.
        asked = time.monotonic()
        response = api.request("GET", f"/agencies/{agency}/winners", params={"wait": hold}, timeout=api.timeout + hold)
        if response.status_code == 200:
            winners = response.json()["winners"]
            log.info("action: consulta_ganadores | result: success | cant_ganadores: %d", len(winners))
            return winners
        if not wait:
            raise ClientError("the draw has not happened yet (not every agency is done): use --wait to wait for it")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientError(f"the draw did not happen within {timeout:g}s")
        if hold and time.monotonic() - asked < hold / 2:  # not held (e.g. the server is stopping): its pace
            if api.stop.wait(min(retry_after(response, 1.0), left)):
                raise KeyboardInterrupt
        _log_waiting(api, agency, deadline - time.monotonic())
        left = deadline - time.monotonic()
        hold = int(min(max(left, 0), 30))
        if hold == 0 and api.stop.wait(max(left, 0)):  # under a second left: one last ask at the deadline
            raise KeyboardInterrupt


def _log_waiting(api, agency: int, left: float) -> None:
    """One line per long-poll round: the draw is awaited, and for how many agencies."""
    from client.http import ClientError

    try:
        status = api.request("GET", "/status").json()
        done, expected = len(status["done"]), int(status["expected"])
    except (ClientError, ValueError, KeyError, TypeError):  # the status is a courtesy: never fail on it
        log.info("action: espera_sorteo | result: in_progress | agencia: %d | segundos_restantes: %.0f", agency, left)
        return
    log.info(
        "action: espera_sorteo | result: in_progress | agencia: %d | finalizadas: %d/%d | "
        "esperando_agencias: %d | segundos_restantes: %.0f",
        agency,
        done,
        expected,
        max(expected - done, 0),
        left,
    )


def _print_winners(agency: int, winners: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"agency": agency, "winners": winners}))
    else:
        for document in winners:
            print(document)


def _require(options: Options, *names: str) -> None:
    for name in names:
        if getattr(options, name) is None:
            env = {"agency": "LOTTERY_AGENCY", "file": "LOTTERY_BETS_FILE"}[name]
            raise ConfigError(f"--{name} is required (or set {env})")


def cmd_run(options: Options, stop) -> int:
    from client import rounds
    from client.http import ClientError
    from client.progress import Progress
    from client.upload import Uploader

    _require(options, "agency", "file")
    api = _api(options, stop)
    progress = None if options.quiet else Progress(options.agency)
    try:
        if not os.path.exists(options.file):  # said before any request, as the upload itself would
            raise ClientError(f"bets file not found: {options.file}")
        api = rounds.target(api, options.agency, options.round)
        scanned = None
        if not options.again and api.round not in (None, 1):
            from client.upload import scan

            scanned = scan(options.file)  # reused by the upload: the file is read and checked once
            rounds.refuse_repeat(api, options.agency, options.upload_id or scanned.upload_id, scanned.bets)
        started = time.monotonic()
        uploader = Uploader(
            api,
            options.agency,
            options.file,
            options.batch_size,
            options.concurrency,
            options.upload_id,
            progress,
            another_file=options.another_file,
            scanned=scanned,
        )
        total = uploader.run()
        if progress:
            progress.close()
        elapsed = time.monotonic() - started
        log.info(
            "action: carga | result: success | agencia: %d | apuestas: %d | enviadas: %d | segundos: %.2f",
            options.agency,
            total,
            uploader.sent,
            elapsed,
        )
        done = api.request("POST", f"/agencies/{options.agency}/done").json()
        log.info(
            "action: fin_carga | result: success | agencia: %d | finalizadas: %d/%d",
            options.agency,
            done["done"],
            done["expected"],
        )
        winners = wait_for_winners(api, options.agency, options.timeout, wait=True)
        _print_winners(options.agency, winners, options.json)
        return 0
    finally:
        if progress:
            progress.close()
        api.close()


def cmd_bet(options: Options, args: argparse.Namespace, stop) -> int:
    _require(options, "agency")
    fields = {
        "first_name": args.first_name,
        "last_name": args.last_name,
        "document": args.document,
        "birthdate": args.birthdate,
        "number": args.number,
    }
    missing = [k for k, v in fields.items() if v in (None, "")]
    if missing:
        raise ConfigError(
            "missing "
            + ", ".join("--" + m.replace("_", "-") for m in missing)
            + " (or NOMBRE, APELLIDO, DOCUMENTO, NACIMIENTO, NUMERO)"
        )
    try:
        fields["number"] = int(fields["number"])
    except ValueError:
        raise ConfigError(f"--number must be an integer, got {fields['number']!r}") from None
    api = _api(options, stop)
    try:
        import uuid

        # One key per invocation: retries inside this run never store the bet twice.
        api.request(
            "POST",
            f"/agencies/{options.agency}/bets",
            json={"bets": [fields]},
            headers={"Idempotency-Key": f"bet-{uuid.uuid4()}"},
        )
    finally:
        api.close()
    log.info("action: apuesta_enviada | result: success | dni: %s | numero: %d", fields["document"], fields["number"])
    return 0


def cmd_winners(options: Options, stop) -> int:
    from client import rounds

    _require(options, "agency")
    api = _api(options, stop)
    try:
        if options.round is not None:
            api = rounds.target(api, options.agency, options.round)
        winners = wait_for_winners(api, options.agency, options.timeout, wait=bool(options.wait))
    finally:
        api.close()
    _print_winners(options.agency, winners, options.json)
    return 0


_OPTION_NAME = re.compile(r"--?[a-z][a-z-]*")


def _token_values(argv: list[str]) -> list[str]:
    """``--token VALUE`` as ``--token=VALUE``: argparse reads a value that begins with "-" as an
    option of its own, and tokens made by earlier releases may begin so (1 in 64). A next word
    that looks like an option name (``--json``) is left alone: then the value is missing."""
    out: list[str] = []
    at = 0
    while at < len(argv):
        if argv[at] == "--token" and at + 1 < len(argv) and not _OPTION_NAME.fullmatch(argv[at + 1]):
            out.append(f"--token={argv[at + 1]}")
            at += 2
        else:
            out.append(argv[at])
            at += 1
    return out


def main(argv: list[str] | None = None, prog: str = "python -m client") -> int:
    # Start-up builds thousands of objects (imports, the parser) and no cycles worth collecting:
    # fewer collections while it does (issue 15). Cycles are still collected, less often.
    gc.set_threshold(*GC_THRESHOLDS)
    given = _token_values(sys.argv[1:] if argv is None else argv)
    args = _parser(prog, only=given[0] if given and given[0] in COMMANDS else None).parse_args(given)
    if args.command == "generate":
        from pathlib import Path

        from client.generate import generate

        for path in generate(Path(args.out), args.agencies, args.bets, args.seed, args.winning_number):
            print(path)
        return 0
    import threading

    cli = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "first_name", "last_name", "document", "birthdate", "number")
    }
    try:
        options = resolve(cli)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level="WARNING" if options.quiet else options.log_level,
        stream=sys.stderr,
        format=LOG_FORMAT,
        datefmt=LOG_DATEFMT,
    )
    # httpx and httpcore log every request at INFO: noise beside the course's lines.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from client.http import ClientError, InsecureServer, Stopped

    stop = threading.Event()
    received = {"signal": signal.SIGINT}
    _on_sigterm(stop, received)
    try:
        if args.command == "run":
            return cmd_run(options, stop)
        if args.command == "bet":
            return cmd_bet(options, args, stop)
        if args.command == "rounds":
            from client import rounds

            api = _api(options, stop)
            try:
                return rounds.list_rounds(api, options.limit, bool(options.json))
            finally:
                api.close()
        return cmd_winners(options, stop)
    except (ConfigError, InsecureServer) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        log.error("action: %s | result: fail | error: %s", args.command, error)
        return 1
    except (KeyboardInterrupt, Stopped):
        stop.set()
        name = signal.Signals(received["signal"]).name
        log.warning(
            "action: %s | result: interrupted | signal: %s | rerun the same command to resume", args.command, name
        )
        return 128 + received["signal"]


# Optional imports of httpx's dependencies that a synchronous HTTP/1.1 uploader never uses: httpx's
# command-line tool (click, rich and pygments, when installed: a third of httpx's import time) and
# httpcore's async backends (anyio, trio). A None entry makes each optional import fail, as its
# library expects it might. Only when this module is the program: in-process callers keep theirs.
UNUSED_OPTIONAL_MODULES = ("httpx._main", "anyio", "trio")


def run_as_program(prog: str = "python -m client") -> None:
    """``python -m client``: main(), then exit without tearing the interpreter down.

    Python's finalization (a garbage collection over every object of httpx and its imports,
    modules cleared one by one) cost the uploader 20-30 ms of CPU, a fifth of a 100k-bet run,
    and does nothing it needs (issue 15): once stdout and stderr are flushed, ``os._exit`` ends
    the process with main()'s exit code. An exception out of main() (a traceback) exits the usual way."""
    for name in UNUSED_OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    code = main(prog=prog)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # e.g. stdout's reader gone (a pipe): the interpreter reports it as usual
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run_as_program()
