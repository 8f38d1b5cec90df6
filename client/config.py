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

from client import options as table
from client.options import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_SERVER, TABLE, Options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CONCURRENCY", "DEFAULT_SERVER", "ConfigError", "Options", "resolve"]


class ConfigError(Exception):
    """A bad option: reported as one line, exit code 2."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _lookup(data: dict[str, object], key: str) -> object:
    """The value at a dotted key (``batch.maxAmount``); None when absent or itself a mapping."""
    value: object = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if isinstance(value, dict) else value


def _from_yaml(path: str) -> dict[str, object]:
    import yaml  # only when a config file is used: keeps start-up lean

    try:
        data = yaml.safe_load(_read(path)) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping")
    out: dict[str, object] = {}
    for entry in TABLE:
        for key in entry.config:
            value = _lookup(data, key)
            if value is not None:
                out[entry.name] = value
                break
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for entry in TABLE:
        for variable in entry.env:
            if environ.get(variable):
                out[entry.name] = environ[variable]
                break
    return out


def _convert(kind: str, name: str, value: object) -> object:
    try:
        if kind in (table.COUNT, table.RETRIES, table.INTEGER):
            number = int(value)  # type: ignore[call-overload]  # a wrong type is a ValueError/TypeError here
            if kind == table.COUNT and number < 1 or kind == table.RETRIES and number < 0:
                raise ValueError
            return number
        if kind == table.SECONDS:
            seconds = float(value)  # type: ignore[arg-type]  # as above
            if seconds <= 0:
                raise ValueError
            return seconds
        if kind == table.TEXT:
            return str(value)
        if kind == table.URL:
            url = str(value).rstrip("/")
            return url if "://" in url else f"http://{url}"
        if kind == table.FLAG:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError
            return text in _TRUE
        if kind == table.UPLOAD_ID:  # the server's Upload-Id shape; it also travels in headers, so no CR/LF
            text = str(value)
            if not (0 < len(text) <= 128 and text.isascii() and all(c.isalnum() or c in "._:-" for c in text)):
                raise ValueError
            return text
        if kind == table.TOKEN:
            text = str(value)
            if not text.isascii() or not text.isprintable() or " " in text:  # it travels in a header
                raise ConfigError("invalid value for token: it must be printable ASCII without spaces")
            return text
        if kind == table.LEVEL:
            level = str(value).upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ValueError
            return level
    except (TypeError, ValueError):
        raise ConfigError(f"invalid value for {name.replace('_', '-')}: {value!r}") from None
    raise AssertionError(f"option {name}: unknown kind {kind!r}")


def resolve(cli: dict[str, object], environ: Mapping[str, str] | None = None) -> Options:
    """Merge the three sources; ``cli`` holds only the options given on the command line.

    Every option, the token included, comes from the first source that gives it: the command
    line, then the environment, then the config file. ``--token-file`` is a form of the token,
    so a token file on the command line beats ``LOTTERY_TOKEN`` in the environment.
    """
    environ = os.environ if environ is None else environ
    config_path = cli.get("config") or environ.get("LOTTERY_CONFIG")
    merged: dict[str, object] = {}
    for layer in (_from_yaml(str(config_path)) if config_path else {}, _from_env(environ), cli):
        layer = {k: v for k, v in layer.items() if v is not None}
        if "token" in layer or "token_file" in layer:  # a higher source's token replaces both forms
            merged.pop("token", None)
            merged.pop("token_file", None)
        merged.update(layer)
    token_file = merged.get("token_file")
    if token_file and not merged.get("token"):
        try:
            merged["token"] = _read(str(token_file)).strip()
        except OSError as error:
            raise ConfigError(f"cannot read token file {token_file}: {error.strerror}") from None
    options = Options()
    kinds = {entry.name: entry.kind for entry in TABLE}
    for name, value in merged.items():
        if name in kinds:
            setattr(options, name, _convert(kinds[name], name, value))
    return options
