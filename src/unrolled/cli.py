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


def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="open a local web page to explore a model's cells (units over text, search, select, sample)",
        description="Serve the viewer: a web page over a checkpoint and a text. It binds to 127.0.0.1 "
                    "(this computer only) by default because it has no login and anyone who can reach it "
                    "can make this machine run the model; pass --host 0.0.0.0 only on a network you trust.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory (as written by unrolled train)")
    p.add_argument("--text", help="a text file to explore, or a directory whose files the page can switch between "
                                  "(default: a sample of the model itself)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: only this computer can connect, since the "
                        "viewer has no login)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--max-chars", type=int, default=None, help="longest text the page accepts (default 20000)")

    def run(args):
        try:
            from unrolled.web.server import serve
        except ImportError as e:
            raise UserError(f"the viewer needs the web extra ({e.name} is missing); "
                            "run: pip install 'unrolled[web]'") from None
        serve(args.checkpoint, text=args.text, host=args.host, port=args.port, open_browser=args.open,
              max_chars=args.max_chars)

    p.set_defaults(func=run)


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure training, sampling and memory against the plain torch.nn loop and the matmul peak",
        description="Benchmark unrolled against the loop a user writes with torch.nn: training throughput "
                    "(rnn, lstm, gru at three shapes), the roofline (the matrix-multiply peak measured in the "
                    "same run, FLOPs per character, fraction of the peak), sampling speed, recording speed and "
                    "the peak memory of full against truncated BPTT. Contenders are interleaved in one run "
                    "and the median of the repeats is reported. Prints Markdown tables, or JSON with --json.")
    p.add_argument("--quick", action="store_true", help="fewer repeats and a shorter memory sweep (a few minutes)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch threads, fixed for the whole run (default: torch's)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when there is one)")
    p.add_argument("--bf16", action="store_true", help="CUDA only: bf16 autocast for the unrolled contenders")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 5, quick 3)")
    p.add_argument("--only", nargs="+", choices=["train", "sample", "record", "memory"],
                   help="run only these parts")

    def run(args):
        from unrolled.bench import main
        return main(quick=args.quick, as_json=args.json, threads=args.threads, device=args.device,
                    bf16=args.bf16, repeats=args.repeats, parts=args.only)

    p.set_defaults(func=run)


COMMANDS = [add_hello, add_prepare, add_serve, add_bench]


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
