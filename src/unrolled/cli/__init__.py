"""unrolled: train, sample from and understand recurrent neural networks.

The command line: argument parsing and printing only; every command calls a library function.

Each command is a pair in the module of its family (lm: train, sample, eval, inspect, plot,
demo; understand: cells, saturation, ngram, match; evidence: intervene, attribute, span, probe,
emergence; tools: hello, prepare, serve, bench; export):
`add_<name>(subparsers)` declares its flags and sets `func` to a function taking the parsed
namespace. Here is only what every command shares: a `UserError` (or an `OSError` on a user's
file) ends in one sentence on stderr and exit status 2, never a traceback; a closed pipe exits
141 quietly; Ctrl-C exits 130 with one line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from unrolled import __version__
from unrolled.cli import evidence, export, lm, tools, understand
from unrolled.errors import UserError

COMMANDS = [tools.add_hello, tools.add_prepare, tools.add_serve, tools.add_bench,
            lm.add_train, lm.add_sample, lm.add_eval, lm.add_inspect, lm.add_plot, lm.add_demo,
            understand.add_cells, understand.add_saturation, understand.add_ngram, understand.add_match,
            evidence.add_intervene, evidence.add_attribute, evidence.add_span, evidence.add_probe,
            evidence.add_emergence,
            export.add_export]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (argparse would print the whole usage first, which
    for `unrolled train` is a screenful that hides the one line that matters)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unrolled", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _one_line(message: str) -> str:
    """A file name or text quoted in a message may hold line breaks; the error stays one line."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not fail again on
    the closed pipe (and print a message about it)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (a test's capture): nothing to silence
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"unrolled: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `unrolled ... | head` closed the pipe: the reader has what it wanted
        _silence_stdout()
        return 141  # as a shell reports a command ended by SIGPIPE
    except OSError as e:  # the disk is full, a folder is not writable...: say which file and why
        where = f" {e.filename}" if e.filename else ""
        print(f"unrolled: error: {_one_line(f'cannot write or read{where}: {e.strerror or e}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C now would print a traceback
        print("unrolled: interrupted", file=sys.stderr)
        return 130
