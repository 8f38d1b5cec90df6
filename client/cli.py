"""The command line, built from the option table (client/options.py) one command at a time.

Each command is a module of client/commands/ with a ``main(options, stop)``; only the one given
is imported (client/__main__.py). Its summary and description live here, so the top-level help
lists every command without importing any of them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from client.options import TABLE, Option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DESCRIPTION = (
    "The agency's uploader: upload a bets file in chunks (resumable, each bet stored exactly once), "
    "say done, wait for the draw and print this agency's winners."
)
WHERE_FROM = (
    "Every option can also come from the environment or a YAML --config file, as its [brackets] say; "
    "the command line wins, then the environment, then the file. "
    "The log level comes from LOTTERY_LOG_LEVEL (or CLI_LOG_LEVEL) or the file's log.level: "
    "DEBUG, INFO (the default), WARNING or ERROR."
)
REQUIRED = "required (on the command line, in the environment or in --config)"


class Command:
    """A command as the parser shows it; ``settings``: it reads the environment and --config."""

    __slots__ = ("summary", "description", "settings")

    def __init__(self, summary: str, description: str, settings: bool = True) -> None:
        self.summary, self.description, self.settings = summary, description, settings


COMMANDS = {
    "run": Command(
        "upload a file, say done, wait for and print the winners",
        "Upload an agency's bets file in chunks, say done, wait for the draw and print the winners. "
        "Rerunning the same command resumes an interrupted upload; each bet is stored once.",
    ),
    "bet": Command(
        "send a single bet",
        "Send one bet. Each field can come from the course's environment variables "
        "NOMBRE, APELLIDO, DOCUMENTO, NACIMIENTO and NUMERO.",
    ),
    "winners": Command(
        "read this agency's winners",
        "Print this agency's winners; before the draw, fail at once, or wait for it with --wait.",
    ),
    "rounds": Command(
        "list the rounds, newest first",
        "List the lottery's rounds, newest first: state, agencies, bets, winners and dates "
        "(with tokens on, any valid token: the operator's or an agency's).",
    ),
    "verify": Command(
        "check the round against the log's signed checkpoints",
        "Check, trusting only the log's key (--log-key), that every chunk of this agency's file is in the "
        "server's log as the file says, that the log never forked from the checkpoints handed during the "
        "upload, that the round's draw follows from the log (and, for a random number, from the seed it "
        "committed to) and that this agency's winners are the file's. Exit 0 when all hold, 1 when one "
        "fails (its evidence is printed), 3 when the round cannot be checked yet (not drawn, or no log).",
    ),
    "generate": Command(
        "write deterministic demo files agency-N.csv",
        "Write demo agency files agency-1.csv ... agency-N.csv in the course's format; "
        "the same seed always writes the same files.",
        settings=False,
    ),
}


class _Formatter(argparse.HelpFormatter):
    """argparse's, with the terminal width read directly: its own way imports shutil (and with it
    bz2, lzma, ...) for every parser built, a few milliseconds of every run's start-up (issue 15)."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(sys.stdout.fileno()).columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width, 40) - 2)


def parser(prog: str = "python -m client", only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only`` (the command given), the parser of that command alone: the
    others, with their options, are most of the cost of building it, and parsing never reaches them
    (usage lines and errors name every command through the fixed metavar)."""
    top = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=WHERE_FROM, formatter_class=_Formatter)
    subparsers = top.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, command in COMMANDS.items():
        if only in (None, name):
            sub = subparsers.add_parser(
                name,
                help=command.summary,
                description=command.description,
                epilog=WHERE_FROM if command.settings else None,
                formatter_class=_Formatter,
            )
            _add_options(sub, name, command.settings)
    return top


def _add_options(sub: argparse.ArgumentParser, command: str, settings: bool) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}

    def group(title: str) -> argparse._ArgumentGroup:
        if title not in groups:
            groups[title] = sub.add_argument_group(title)
        return groups[title]

    for entry in TABLE:
        if command not in entry.commands:
            continue
        required = command in entry.required
        where = entry.group or (REQUIRED if required and settings else None)
        (group(where) if where else sub).add_argument(entry.flag, **_argparse_keywords(entry, command, settings))


def _argparse_keywords(entry: Option, command: str, settings: bool) -> dict[str, Any]:
    from client import options as kinds

    keywords: dict[str, Any] = {"help": argparse.SUPPRESS if command in entry.hidden else entry.help_for(command)}
    if entry.kind == kinds.FLAG:
        keywords["action"] = "store_true"
        keywords["default"] = None  # "not given": the environment or the file may still say
    elif entry.kind in (kinds.COUNT, kinds.RETRIES, kinds.INTEGER):
        keywords["type"] = int
    elif entry.kind == kinds.SECONDS:
        keywords["type"] = float
    if not settings:  # the command line is the only source: argparse applies defaults and requirements
        keywords["default"] = entry.default
        keywords["required"] = command in entry.required
    return keywords


def parse(argv: list[str], prog: str) -> tuple[str, dict[str, object]]:
    """(the command, the options given on the command line); argparse exits on a bad command line."""
    given = _token_values(argv)
    args = parser(prog, only=given[0] if given and given[0] in COMMANDS else None).parse_args(given)
    cli = vars(args)
    return cli.pop("command"), cli


def check_required(options: object, command: str) -> None:
    from client.config import ConfigError

    absent = [e for e in TABLE if command in e.required and getattr(options, e.name) in (None, "")]
    if absent:
        flags = ", ".join(e.flag for e in absent)
        variables = ", ".join(e.env[0] for e in absent if e.env)
        verb = "is" if len(absent) == 1 else "are"
        raise ConfigError(f"{flags} {verb} required" + (f" (or set {variables})" if variables else ""))


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
