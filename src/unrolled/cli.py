"""unrolled: train, sample from and understand recurrent neural networks.

The command line: argument parsing only; every command calls a library function.

Each command is a pair: `add_<name>(subparsers)` declares its flags and sets `func` to a
function taking the parsed namespace. A `UserError` (or an `OSError` on a user's file) ends in
one sentence on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from unrolled import __version__
from unrolled.errors import UserError


def add_hello(sub) -> None:
    p = sub.add_parser("hello", help="train the lecture's 'hello' RNN with NumPy and with unrolled.RNN")
    p.set_defaults(func=lambda args: __import__("unrolled.hello", fromlist=["main"]).main())


COMMANDS = [add_hello]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unrolled", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"unrolled: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unrolled: interrupted", file=sys.stderr)
        return 130
