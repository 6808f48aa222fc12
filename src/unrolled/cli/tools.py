"""`unrolled hello`, `prepare`, `serve` and `bench`: the example, the corpus, the viewer, the benchmark."""
from __future__ import annotations

import json

from unrolled import bench, hello
from unrolled.charlm.prepare import prepare
from unrolled.charlm.text import UNKNOWN_POLICIES
from unrolled.errors import UserError


def add_hello(sub) -> None:
    p = sub.add_parser("hello", help="train the lecture's 'hello' RNN with NumPy and with unrolled.RNN")
    p.set_defaults(func=lambda args: hello.main())


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="build a vocabulary and a memory-mapped token file from a corpus, "
                                       "for corpora larger than memory")
    p.add_argument("corpus", nargs="*", help="text files, directories or globs (default: the Python standard library)")
    p.add_argument("--out", required=True, help="folder to write tokens.bin and corpus.json into")
    p.add_argument("--byte-level", action="store_true", help="model bytes instead of UTF-8 characters")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    prepared = prepare(args.corpus, args.out, byte_level=args.byte_level)
    print(f"prepared {prepared.meta['tokens']:,} symbols, vocabulary {len(prepared.vocab)}, "
          f"{prepared.meta['dtype']} -> {prepared.path}")
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="open a local web page to explore a model's cells (units over text, search, select, sample)",
        description="Serve the viewer: a web page over a checkpoint and a text. It binds to 127.0.0.1 "
                    "(this computer only) by default because it has no login and anyone who can reach it "
                    "can make this machine run the model; pass --host 0.0.0.0 only on a network you trust.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory (as written by unrolled train)")
    p.add_argument("file", nargs="?", default=None, metavar="TEXT",
                   help="a text file to explore, or a directory whose files the page can switch between (the same "
                        "as --text)")
    p.add_argument("--text", help="a text file to explore, or a directory whose files the page can switch between "
                                  "(default: a sample of the model itself)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: only this computer can connect, since the "
                        "viewer has no login)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--max-chars", type=int, default=None, help="longest text the page accepts (default 20000)")
    p.add_argument("--unknown", choices=UNKNOWN_POLICIES, default="error",
                   help="characters of a text the model never saw: error (default), skip them, or replace them "
                        "with a space")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    try:  # imported here, not at the top: the server needs the optional web extra (starlette, uvicorn)
        from unrolled.web.server import serve
    except ImportError as e:
        raise UserError(f"the viewer needs the web extra ({e.name} is missing); "
                        "run: pip install 'unrolled[web]'") from None
    if args.file is not None and args.text is not None and args.file != args.text:
        raise UserError(f"give the text once, as TEXT or as --text, not both ({args.file!r} and {args.text!r})")
    serve(args.checkpoint, text=args.text or args.file, host=args.host, port=args.port, open_browser=args.open,
          max_chars=args.max_chars, unknown=args.unknown)
    return 0


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
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts, each measured in turn in this process, e.g. 1,2 (default: 1 and the "
                        "machine's thread count, torch's default)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when there is one)")
    p.add_argument("--bf16", action="store_true", help="CUDA only: bf16 autocast for the unrolled contenders")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 5, quick 3)")
    p.add_argument("--only", nargs="+", choices=list(bench.PARTS), help="run only these parts")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    settings = bench.settings(quick=args.quick, threads=args.threads, device=args.device, bf16=args.bf16,
                              repeats=args.repeats, parts=args.only)
    result = bench.run(settings)
    print(json.dumps(result, indent=1) if args.json else bench.table(result))
    return 0
