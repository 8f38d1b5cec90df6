"""Per-agency bearer tokens: load and check them, and ``python -m app.tokens`` to make them.

The tokens file is a JSON object mapping agency id to its token: ``{"1": "...", "2": "..."}``,
plus optionally ``"operator"``: the operator's token, which opens the operator's page
(``GET /``), reads every round and opens the next one (``POST /rounds``); it uploads nothing.
Tokens are compared in constant time against every agency's token, so neither the answer
time nor the log says which agency a wrong guess was close to. Tokens are never logged.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
from pathlib import Path

from app.domain import MAX_AGENCIES

MIN_TOKEN_LENGTH = 16
OPERATOR = "operator"  # the key of the operator's token in the tokens file
MAX_AGENCY = MAX_AGENCIES  # the largest LOTTERY_AGENCIES


class TokensError(ValueError):
    """The tokens file is missing, unreadable or malformed."""


class Tokens:
    def __init__(self, by_agency: dict[int, str], operator: str | None = None):
        self._by_agency = {agency: token.encode() for agency, token in by_agency.items()}
        self._operator = operator.encode() if operator is not None else None

    @classmethod
    def load(cls, path: Path, agencies: int) -> Tokens:  # noqa: ARG003 - kept for callers
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise TokensError(f"cannot read tokens file {path}: {error.strerror}") from None
        except ValueError as error:
            raise TokensError(f"tokens file {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise TokensError(f'tokens file {path} must be a JSON object {{"1": "token", ...}}')
        by_agency: dict[int, str] = {}
        operator: str | None = None
        for key, token in data.items():
            # Ids past this round's agencies are welcome: a later round may have more agencies.
            if key != OPERATOR and not (isinstance(key, str) and key.isdigit() and 1 <= int(key) <= MAX_AGENCY):
                raise TokensError(f"tokens file {path}: {key!r} is not an agency id from 1 to {MAX_AGENCY}")
            if (
                not isinstance(token, str)
                or len(token) < MIN_TOKEN_LENGTH
                or not token.isascii()
                or not token.isprintable()
            ):
                owner = "the operator" if key == OPERATOR else f"agency {key}"
                raise TokensError(
                    f"tokens file {path}: the token of {owner} must be at least "
                    f"{MIN_TOKEN_LENGTH} printable ASCII characters"
                )
            if key == OPERATOR:
                operator = token
            else:
                by_agency[int(key)] = token
        if len(set(by_agency.values())) != len(by_agency):
            raise TokensError(f"tokens file {path}: two agencies share a token")
        if operator is not None and operator in by_agency.values():
            raise TokensError(f"tokens file {path}: the operator shares a token with an agency")
        return cls(by_agency, operator)

    def owner(self, token: str) -> int | None:
        """The agency this token belongs to, or None. Checks every token, always."""
        presented = token.encode()
        found = None
        for agency, expected in self._by_agency.items():
            if hmac.compare_digest(presented, expected):
                found = agency
        return found

    def is_operator(self, token: str) -> bool:
        return self._operator is not None and hmac.compare_digest(token.encode(), self._operator)

    def may_view(self, token: str) -> bool:
        """Whether this token may see the round's counts: the operator's or any agency's."""
        operator = self._operator is not None and hmac.compare_digest(token.encode(), self._operator)
        return self.owner(token) is not None or operator


def _token() -> str:
    """256 random bits, URL-safe, never beginning with "-": a command line would read such a
    token as an option (`--token -x...`), and one token in 64 would begin so."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def make(agencies: int, operator: bool = True) -> dict[str, str]:
    tokens = {str(agency): _token() for agency in range(1, agencies + 1)}
    if operator:
        tokens[OPERATOR] = _token()
    return tokens


def write(out: Path, tokens: dict[str, str]) -> None:
    """tokens.json for the server, agency-N.token for each uploader and operator.token (compose secrets).

    The folder is private (0700); the files are 0644 because compose mounts file secrets
    with their host mode, and the containers run as another user.
    """
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    files = {"tokens.json": json.dumps(tokens, indent=2) + "\n"}
    files.update(
        {
            ("operator.token" if agency == OPERATOR else f"agency-{agency}.token"): token + "\n"
            for agency, token in tokens.items()
        }
    )
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0o644)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.tokens",
        description="Generate per-agency bearer tokens and the operator's token.",
        epilog=(
            "Usual use: python -m app.tokens --agencies 5 --out secrets, then start the server with "
            "LOTTERY_TOKENS_FILE=secrets/tokens.json; secrets/operator.token opens the operator's page "
            "and POST /rounds, secrets/agency-N.token goes to agency N's uploader (--token-file)."
        ),
    )
    parser.add_argument(
        "--agencies",
        type=int,
        default=5,
        metavar="N",
        help="make tokens for agencies 1..N; use the server's LOTTERY_AGENCIES (default: 5)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write tokens.json, agency-N.token and operator.token here (default: JSON on stdout)",
    )
    parser.add_argument("--no-operator", action="store_true", help="no operator token (nobody may open a round)")
    args = parser.parse_args(argv)
    if args.agencies < 1:
        print("error: --agencies must be 1 or more", file=sys.stderr)
        return 2
    tokens = make(args.agencies, operator=not args.no_operator)
    if args.out is None:
        print(json.dumps(tokens, indent=2))
    else:
        write(args.out, tokens)
        extra = "" if args.no_operator else " and operator.token"
        print(f"wrote {args.out / 'tokens.json'}, {args.agencies} agency-N.token files{extra}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
