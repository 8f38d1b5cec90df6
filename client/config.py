"""Uploader options: command line first, then the environment, then a YAML config file.

The config file keeps the course's shape::

    server:
      address: "127.0.0.1:8000"   # or url: "http://127.0.0.1:8000"
    agency: 1
    file: "agency-1.csv"
    batch:
      maxAmount: 5000
      concurrency: 4
    log:
      level: "INFO"
"""

from __future__ import annotations

import os

DEFAULT_SERVER = "http://127.0.0.1:8000"
# Chosen from `make bench`'s "uploader" section (README "Performance"): every request costs
# about a millisecond of fixed work on each side, so 1,000-bet chunks made a 1M-bet round
# 40% slower than 5,000; past 5,000 the gain is within the noise while a retried chunk
# costs more and a small file is cut into fewer pieces to send at once.
DEFAULT_BATCH_SIZE = 5000
DEFAULT_CONCURRENCY = 4


class ConfigError(Exception):
    """A bad option: reported as one line, exit code 2."""


class Options:
    """Every option with its default; files are plain path strings (no pathlib: start-up is counted)."""

    def __init__(self) -> None:
        self.server: str = DEFAULT_SERVER
        self.agency: int | None = None
        self.file: str | None = None
        self.batch_size: int = DEFAULT_BATCH_SIZE
        self.concurrency: int = DEFAULT_CONCURRENCY
        self.token: str | None = None
        self.timeout: float = 600.0  # seconds to wait for the draw
        self.request_timeout: float = 60.0  # seconds for one HTTP request
        self.retries: int = 10  # retries per request on transient failures, after the first attempt
        self.quiet: bool = False
        self.json: bool = False
        self.wait: bool = False
        self.upload_id: str | None = None
        self.log_level: str = "INFO"
        self.another_file: bool = False
        self.cacert: str | None = None  # CA certificate file to trust for an https server
        self.insecure: bool = False  # allow the token over plain http to another machine
        self.round: int | None = None  # the round to upload into or read (default: the current one)
        self.again: bool = False  # send a file already stored whole in an earlier round
        self.limit: int = 20  # rounds listed by `rounds`


# option name -> environment variable(s), first found wins
ENV = {
    "server": ("LOTTERY_SERVER",),
    "agency": ("LOTTERY_AGENCY", "CLI_ID"),
    "file": ("LOTTERY_BETS_FILE",),
    "batch_size": ("LOTTERY_BATCH_SIZE", "CLI_BATCH_MAXAMOUNT"),
    "concurrency": ("LOTTERY_CONCURRENCY",),
    "token": ("LOTTERY_TOKEN",),
    "token_file": ("LOTTERY_TOKEN_FILE",),
    "timeout": ("LOTTERY_TIMEOUT",),
    "retries": ("LOTTERY_RETRIES",),
    "upload_id": ("LOTTERY_UPLOAD_ID",),
    "log_level": ("LOTTERY_LOG_LEVEL", "CLI_LOG_LEVEL"),
    "quiet": ("LOTTERY_QUIET",),
    "json": ("LOTTERY_JSON",),
    "cacert": ("LOTTERY_CACERT",),
    "insecure": ("LOTTERY_INSECURE",),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _from_yaml(path: str) -> dict:
    import yaml  # only when a config file is used: keeps start-up lean

    try:
        data = yaml.safe_load(_read(path)) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping")
    out: dict = {}
    server = data.get("server")
    if isinstance(server, dict):
        if "url" in server:
            out["server"] = server["url"]
        elif "address" in server:
            out["server"] = str(server["address"])
    elif isinstance(server, str):
        out["server"] = server
    batch = data.get("batch") or {}
    if "maxAmount" in batch:
        out["batch_size"] = batch["maxAmount"]
    if "concurrency" in batch:
        out["concurrency"] = batch["concurrency"]
    if isinstance(data.get("log"), dict) and "level" in data["log"]:
        out["log_level"] = data["log"]["level"]
    for key in ("agency", "file", "token", "token_file", "cacert", "insecure", "timeout", "retries", "quiet", "json"):
        if key in data:
            out[key] = data[key]
    return out


def _convert(name: str, value: object) -> object:
    try:
        if name in ("agency", "batch_size", "concurrency", "retries", "round", "limit"):
            number = int(value)  # type: ignore[arg-type]
            if number < 1 and name != "retries" or number < 0:
                raise ValueError
            return number
        if name == "timeout":
            seconds = float(value)  # type: ignore[arg-type]
            if seconds <= 0:
                raise ValueError
            return seconds
        if name in ("file", "cacert"):
            return str(value)
        if name == "server":
            url = str(value).rstrip("/")
            return url if "://" in url else f"http://{url}"
        if name in ("quiet", "json", "another_file", "insecure", "again"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError
            return text in _TRUE
        if name == "upload_id":  # the server's Upload-Id shape; it also travels in headers, so no CR/LF
            text = str(value)
            if not (0 < len(text) <= 128 and text.isascii() and all(c.isalnum() or c in "._:-" for c in text)):
                raise ValueError
            return text
        if name == "token":
            text = str(value)
            if not text.isascii() or not text.isprintable() or " " in text:  # it travels in a header
                raise ConfigError("invalid value for token: it must be printable ASCII without spaces")
            return text
        if name == "log_level":
            level = str(value).upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ValueError
            return level
    except (TypeError, ValueError):
        raise ConfigError(f"invalid value for {name.replace('_', '-')}: {value!r}") from None
    return value


def resolve(cli: dict, environ: dict[str, str] | None = None) -> Options:
    """Merge the three sources; ``cli`` holds only the options given on the command line.

    Every option, the token included, comes from the first source that gives it: the command
    line, then the environment, then the config file. ``--token-file`` is a form of the token,
    so a token file on the command line beats ``LOTTERY_TOKEN`` in the environment.
    """
    environ = os.environ if environ is None else environ
    cli = dict(cli)
    config_path = cli.pop("config", None) or environ.get("LOTTERY_CONFIG")
    from_env: dict = {}
    for name, variables in ENV.items():
        for variable in variables:
            if environ.get(variable):
                from_env[name] = environ[variable]
                break
    merged: dict = {}
    for layer in (_from_yaml(str(config_path)) if config_path else {}, from_env, cli):
        layer = {k: v for k, v in layer.items() if v is not None}
        if "token" in layer or "token_file" in layer:  # a higher source's token replaces both forms
            merged.pop("token", None)
            merged.pop("token_file", None)
        merged.update(layer)
    token_file = merged.pop("token_file", None)
    if token_file and not merged.get("token"):
        try:
            merged["token"] = _read(token_file).strip()
        except OSError as error:
            raise ConfigError(f"cannot read token file {token_file}: {error.strerror}") from None
    options = Options()
    for name, value in merged.items():
        if hasattr(options, name):
            setattr(options, name, _convert(name, value))
    return options
