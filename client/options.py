"""Every option of the uploader, declared once: the table the rest is built from.

Each class attribute of :class:`Options` is one :class:`Option`: its kind (how a value is read
and checked), default, the commands that take it on the command line, its environment variables
(first set wins), its keys in the YAML config file (first found wins) and its help. client/cli.py
builds each command's argparse options from it, and each help line ends with the option's
variables and config key; client/config.py reads the environment and the config file through it.
An ``Options`` instance holds one value per entry, the default until a source gives one.
"""

from __future__ import annotations

from client.generate import WINNING_NUMBER
from client.http import RETRY_BUDGET

DEFAULT_SERVER = "http://127.0.0.1:8000"
# Chosen from `make bench`'s "uploader" section (README "Performance"): every request costs
# about a millisecond of fixed work on each side, so 1,000-bet chunks made a 1M-bet round
# 40% slower than 5,000; past 5,000 the gain is within the noise while a retried chunk
# costs more and a small file is cut into fewer pieces to send at once.
DEFAULT_BATCH_SIZE = 5000
DEFAULT_CONCURRENCY = 4

# Kinds: how a value from any source becomes the option's (client/config.py converts each).
COUNT = "count"  # an integer, 1 or more
RETRIES = "retries"  # an integer, 0 or more
INTEGER = "integer"  # any integer (generate's)
SECONDS = "seconds"  # a number above 0
TEXT = "text"  # a string as given (paths, the bet's fields)
URL = "url"  # the server: "host:port" gets http://
FLAG = "flag"  # on/off: a switch on the command line, true/false elsewhere
UPLOAD_ID = "upload_id"
TOKEN = "token"
LEVEL = "level"  # a log level

TYPE_CHECKING = False  # typing's own flag costs an import: start-up is counted (issue 15)
if TYPE_CHECKING:
    from typing import Any

AGENCY_COMMANDS = ("run", "bet", "winners", "rounds", "verify")  # the commands that talk to the server


class Option:
    """One row of the table; ``name`` is the attribute it is bound to (and the option's dest)."""

    __slots__ = ("name", "kind", "default", "commands", "env", "config", "help", "required", "group", "hidden")

    def __init__(
        self,
        kind: str,
        default: object,
        commands: tuple[str, ...],
        help: str | dict[str, str],  # noqa: A002 (argparse's word): one text, or one per command
        env: tuple[str, ...],
        config: tuple[str, ...],
        required: tuple[str, ...],
        group: str | None,
        hidden: tuple[str, ...],
    ) -> None:
        self.name = ""
        self.kind, self.default, self.commands, self.help = kind, default, commands, help
        self.env, self.config, self.required, self.group, self.hidden = env, config, required, group, hidden

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def help_for(self, command: str) -> str:
        """The help line in ``command``'s options: its text, then where else the value may come from."""
        text = self.help if isinstance(self.help, str) else self.help[command]
        sources = []
        if self.env:
            sources.append("env " + " or ".join(self.env))
        if self.config:
            sources.append("config " + " or ".join(self.config))
        return f"{text} [{'; '.join(sources)}]" if sources else text


def option(
    kind: str,
    default: object = None,
    *,
    commands: tuple[str, ...] = (),
    help: str | dict[str, str] = "",  # noqa: A002
    env: tuple[str, ...] = (),
    config: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    group: str | None = None,
    hidden: tuple[str, ...] = (),
) -> Any:  # an Option, typed as the value an Options instance holds under that name
    return Option(kind, default, commands, help, env, config, required, group, hidden)


BET_FIELDS = "the bet (required; each also from its environment variable)"


class Options:
    """The table (class attributes) and, on an instance, the values of one run."""

    agency: int | None = option(
        COUNT,
        commands=AGENCY_COMMANDS,
        required=("run", "bet", "winners", "verify"),
        hidden=("rounds",),  # rounds lists every agency's: accepted, as before, but not offered
        help="agency id",
        env=("LOTTERY_AGENCY", "CLI_ID"),
        config=("agency",),
    )
    file: str | None = option(
        TEXT,
        commands=("run", "verify"),
        required=("run", "verify"),
        help="agency CSV file",
        env=("LOTTERY_BETS_FILE",),
        config=("file",),
    )
    server: str = option(
        URL,
        DEFAULT_SERVER,
        commands=AGENCY_COMMANDS,
        help=f"server URL (default {DEFAULT_SERVER})",
        env=("LOTTERY_SERVER",),
        config=("server.url", "server.address", "server"),
    )
    token: str | None = option(
        TOKEN, commands=AGENCY_COMMANDS, help="bearer token", env=("LOTTERY_TOKEN",), config=("token",)
    )
    token_file: str | None = option(
        TEXT,
        commands=AGENCY_COMMANDS,
        help="file holding the bearer token",
        env=("LOTTERY_TOKEN_FILE",),
        config=("token_file",),
    )
    cacert: str | None = option(
        TEXT,
        commands=AGENCY_COMMANDS,
        help="CA certificate (PEM) to trust for an https server",
        env=("LOTTERY_CACERT",),
        config=("cacert",),
    )
    insecure: bool = option(
        FLAG,
        False,
        commands=AGENCY_COMMANDS,
        help="allow sending the token over plain http to a machine other than this one",
        env=("LOTTERY_INSECURE",),
        config=("insecure",),
    )
    config: str | None = option(
        TEXT, commands=AGENCY_COMMANDS, help="YAML config file in the course's shape", env=("LOTTERY_CONFIG",)
    )
    retries: int | None = option(
        RETRIES,
        commands=AGENCY_COMMANDS,
        help="at most this many retries of a request after its first attempt fails on a transient error "
        "(default: as many as --retry-budget allows)",
        env=("LOTTERY_RETRIES",),
        config=("retries",),
    )
    # A budget, not a count: the server answers 503 for as long as a database failover lasts
    # (about 50 s with pg_auto_failover's defaults, docs/postgres.md), and that is not a count.
    retry_budget: float = option(
        SECONDS,
        RETRY_BUDGET,
        commands=AGENCY_COMMANDS,
        help=f"seconds a request keeps retrying while the server is unreachable or answers 503 "
        f"(default {RETRY_BUDGET:.0f}: rides through a database failover)",
        env=("LOTTERY_RETRY_BUDGET",),
        config=("retry_budget",),
    )
    quiet: bool = option(
        FLAG,
        False,
        commands=AGENCY_COMMANDS,
        help="only errors on stderr",
        env=("LOTTERY_QUIET",),
        config=("quiet",),
    )
    log_level: str = option(
        LEVEL,
        "INFO",
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
        env=("LOTTERY_LOG_LEVEL", "CLI_LOG_LEVEL"),
        config=("log.level",),
    )
    batch_size: int = option(
        COUNT,
        DEFAULT_BATCH_SIZE,
        commands=("run",),
        help=f"bets per chunk (default {DEFAULT_BATCH_SIZE})",
        env=("LOTTERY_BATCH_SIZE", "CLI_BATCH_MAXAMOUNT"),
        config=("batch.maxAmount",),
    )
    concurrency: int = option(
        COUNT,
        DEFAULT_CONCURRENCY,
        commands=("run",),
        help=f"chunks in flight (default {DEFAULT_CONCURRENCY})",
        env=("LOTTERY_CONCURRENCY",),
        config=("batch.concurrency",),
    )
    timeout: float = option(
        SECONDS,
        600.0,
        commands=("run", "winners"),
        help={
            "run": "seconds to wait for the draw (default 600)",
            "winners": "seconds to wait with --wait (default 600)",
        },
        env=("LOTTERY_TIMEOUT",),
        config=("timeout",),
    )
    request_timeout: float = option(SECONDS, 60.0)  # seconds for one HTTP request (not an option yet)
    upload_id: str | None = option(
        UPLOAD_ID,
        commands=("run", "verify"),
        help={
            "run": "continue this upload (its id is printed when a chunk is rejected)",
            "verify": "the upload the file was sent under, when it was not its own (run --upload-id)",
        },
        env=("LOTTERY_UPLOAD_ID",),
    )
    another_file: bool = option(
        FLAG,
        False,
        commands=("run",),
        help="this file is not a new version of one already uploaded this round: store its bets as well",
    )
    round: int | None = option(
        COUNT,
        commands=("run", "winners", "verify"),
        required=("verify",),
        help={
            "run": "upload into this round (default: the current one, learned at start)",
            "winners": "the winners of this round (default: the current one)",
            "verify": "the round to verify",
        },
    )
    receipts: str | None = option(
        TEXT,
        commands=("run", "verify"),
        help="the receipts file: what the log handed back for each chunk (default: the bets file's name "
        "followed by .receipts.jsonl, beside it)",
        env=("LOTTERY_RECEIPTS",),
        config=("receipts",),
    )
    log_key: str | None = option(
        TEXT,
        commands=("verify",),
        required=("verify",),
        help="the log's verifier key, name+hexkeyid+base64 (from the operator, e.g. GET /log/vkey once): "
        "the only thing verify trusts",
        env=("LOTTERY_LOG_KEY",),
        config=("log_key",),
    )
    again: bool = option(FLAG, False, commands=("run",), help="send a file already stored whole in an earlier round")
    wait: bool = option(FLAG, False, commands=("winners",), help="wait until the draw (long poll)")
    limit: int = option(COUNT, 20, commands=("rounds",), help="how many rounds (default 20)")
    json: bool = option(
        FLAG,
        False,
        commands=("run", "winners", "rounds", "verify"),
        help={
            "verify": "the checks as JSON on stdout",
            "run": "winners as JSON on stdout",
            "winners": "winners as JSON on stdout",
            "rounds": "the rounds as JSON on stdout",
        },
        env=("LOTTERY_JSON",),
        config=("json",),
    )
    first_name: str | None = option(
        TEXT, commands=("bet",), required=("bet",), group=BET_FIELDS, help="first name", env=("NOMBRE",)
    )
    last_name: str | None = option(
        TEXT, commands=("bet",), required=("bet",), group=BET_FIELDS, help="last name", env=("APELLIDO",)
    )
    document: str | None = option(
        TEXT, commands=("bet",), required=("bet",), group=BET_FIELDS, help="document number", env=("DOCUMENTO",)
    )
    birthdate: str | None = option(
        TEXT, commands=("bet",), required=("bet",), group=BET_FIELDS, help="YYYY-MM-DD", env=("NACIMIENTO",)
    )
    number: str | None = option(  # checked by the command: its own message
        TEXT, commands=("bet",), required=("bet",), group=BET_FIELDS, help="the number bet on, 0-9999", env=("NUMERO",)
    )
    out: str | None = option(
        TEXT, commands=("generate",), required=("generate",), help="directory to write the files into"
    )
    agencies: int = option(INTEGER, 5, commands=("generate",), help="how many agency files (default 5)")
    bets: int = option(INTEGER, 20_000, commands=("generate",), help="bets per agency (default 20000)")
    seed: int = option(INTEGER, 1, commands=("generate",), help="random seed (default 1)")
    winning_number: int = option(
        INTEGER,
        WINNING_NUMBER,
        commands=("generate",),
        help=f"the number some bets are planted with (default {WINNING_NUMBER})",
    )

    def __init__(self) -> None:
        for entry in TABLE:
            setattr(self, entry.name, entry.default)


TABLE: tuple[Option, ...] = tuple(value for value in vars(Options).values() if isinstance(value, Option))
