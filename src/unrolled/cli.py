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


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="build a vocabulary and a memory-mapped token file from a corpus, "
                                       "for corpora larger than memory")
    p.add_argument("corpus", nargs="*", help="text files, directories or globs (default: the Python standard library)")
    p.add_argument("--out", required=True, help="folder to write tokens.bin and corpus.json into")
    p.add_argument("--byte-level", action="store_true", help="model bytes instead of UTF-8 characters")

    def run(args):
        from unrolled.prepare import prepare

        p = prepare(args.corpus, args.out, byte_level=args.byte_level)
        print(f"prepared {p.meta['tokens']:,} symbols, vocabulary {len(p.vocab)}, {p.meta['dtype']} -> {p.path}")

    p.set_defaults(func=run)


COMMANDS = [add_hello, add_prepare]


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
    except OSError as e:  # the disk is full, a folder is not writable...: say which file and why
        where = f" {e.filename}" if e.filename else ""
        print(f"unrolled: error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unrolled: interrupted", file=sys.stderr)
        return 130
