"""``python -m client``: the agency's command line.

    run       upload a bets file in chunks, say done, wait for the draw, print the winners
    bet       send one bet (also from the course's NOMBRE, APELLIDO, ... variables)
    winners   read this agency's winners (``--wait`` polls until the draw)
    rounds    list the rounds, newest first
    verify    check a round against the log's signed checkpoints (client/verify.py)
    generate  write deterministic demo files agency-N.csv

Logs go to stderr in the course's format; winners go to stdout (``--json`` for JSON).
Exit codes: 0 done, 1 failed, 2 bad options, 3 (verify) not checkable yet, 130/143 stopped by
Ctrl-C/SIGTERM (while the command ran; a signal once it has ended leaves its outcome).

The parts: client/options.py (every option, declared once), client/cli.py (argparse built from
it, one command's options at a time), client/config.py (environment and config file), and
client/commands/NAME.py (each command's body, imported only when it runs).
"""

from __future__ import annotations

import gc
import os
import sys

# The course's log line, as the server writes it (app/logs.py; the uploader never imports
# app/): tests/unit/test_one_source.py checks that the two agree.
LOG_FORMAT = "%(asctime)s %(levelname)-8s %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"
GC_THRESHOLDS = (20_000, 50, 50)  # see main()


def main(argv: list[str] | None = None, prog: str = "python -m client", *, whole_process: bool = False) -> int:
    """Parse (client/cli.py), resolve the options (client/config.py), run the command's module.

    SIGTERM and SIGINT are this function's while it runs; an in-process caller gets its own
    handlers back. The program (``whole_process``) keeps them to its exit, so that a signal
    after the command ended cannot turn its outcome into a traceback or a kill."""
    # Start-up builds thousands of objects (imports, the parser) and no cycles worth collecting:
    # fewer collections while it does (issue 15). Cycles are still collected, less often.
    gc.set_threshold(*GC_THRESHOLDS)
    from client.cli import COMMANDS, check_required, parse
    from client.config import ConfigError, resolve

    command, cli = parse(sys.argv[1:] if argv is None else argv, prog)
    try:
        # generate reads no environment and no config file: its command line is all it takes.
        options = resolve(cli, None if COMMANDS[command].settings else {})
        check_required(options, command)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import importlib
    import logging
    import signal
    import threading

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
    received: dict[str, int] = {"signal": signal.SIGINT}
    # A signal unwinds the command while it runs (again, if its unwinding hangs); once the command
    # has ended, its outcome is being reported, and a KeyboardInterrupt raised in the middle of
    # that report was a traceback (the upload model found one: a SIGTERM while a rejected chunk
    # was logged). Only a plain store between the command's end and the flag's clearing: Python
    # runs a signal handler at a call or a loop's jump, never between two of them.
    command_running = [True]

    def on_signal(signum: int, frame: object) -> None:  # noqa: ARG001
        """SIGTERM stops like Ctrl-C: in-flight chunks give up, the main thread unwinds at once."""
        stop.set()
        if command_running[0]:
            received["signal"] = signum
            raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            code: int = importlib.import_module(f"client.commands.{command}").main(options, stop)
        finally:
            command_running[0] = False
        return code
    except (ConfigError, InsecureServer) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        logging.getLogger("client").error("action: %s | result: fail | error: %s", command, error)
        return 1
    except (KeyboardInterrupt, Stopped):
        stop.set()
        name = signal.Signals(received["signal"]).name
        logging.getLogger("client").warning(
            "action: %s | result: interrupted | signal: %s | rerun the same command to resume", command, name
        )
        return 128 + received["signal"]
    finally:
        if not whole_process:
            for signum, handler in previous.items():
                if handler is not None:  # None: not set from Python, nothing to put back
                    signal.signal(signum, handler)


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
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None is how an import is blocked
    code = main(prog=prog, whole_process=True)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # e.g. stdout's reader gone (a pipe): the interpreter reports it as usual
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run_as_program()
