"""``python -m tlog keygen NAME PATH``: make the log's key; ``python -m tlog vkey PATH``: print
the verifier key (``name+hexkeyid+base64(0x01 ‖ pub)``) that agencies configure."""

from __future__ import annotations

import argparse
import sys

from tlog import keyfile
from tlog.note import NoteError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlog", description="The transparency log's signing key.")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new key file (mode 0600) and print its verifier key")
    keygen.add_argument("name", help="the key's name: the log's origin, e.g. lottery.example/log")
    keygen.add_argument("path", help="the new key file (never overwritten)")
    vkey = commands.add_parser("vkey", help="print the verifier key of a key file")
    vkey.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            signer = keyfile.write_new_key(args.path, args.name)
        else:
            signer = keyfile.load_signer(args.path)
    except (OSError, NoteError, keyfile.KeyFileError) as error:
        print(f"python -m tlog {args.command}: {error}", file=sys.stderr)
        return 1
    print(signer.verifier().vkey())
    return 0


if __name__ == "__main__":
    sys.exit(main())
