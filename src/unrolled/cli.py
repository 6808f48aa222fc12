"""unrolled: train, sample from and understand recurrent neural networks.

The command line: argument parsing only; every command calls a library function.

Each command is a pair: `add_<name>(subparsers)` declares its flags and sets `func` to a
function taking the parsed namespace. A `UserError` (or an `OSError` on a user's file) ends in
one sentence on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from unrolled import __version__, threads
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
    p.add_argument("--unknown", choices=("error", "skip", "replace"), default="error",
                   help="characters of a text the model never saw: error (default), skip them, or replace them "
                        "with a space")

    def run(args):
        try:
            from unrolled.web.server import serve
        except ImportError as e:
            raise UserError(f"the viewer needs the web extra ({e.name} is missing); "
                            "run: pip install 'unrolled[web]'") from None
        if args.file is not None and args.text is not None and args.file != args.text:
            raise UserError(f"give the text once, as TEXT or as --text, not both ({args.file!r} and {args.text!r})")
        serve(args.checkpoint, text=args.text or args.file, host=args.host, port=args.port, open_browser=args.open,
              max_chars=args.max_chars, unknown=args.unknown)

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



# --- character language models: train, sample, eval, inspect, plot, demo ---------------------
def _train_flag_type(annotation: str):
    """A config field's annotation -> the argparse type of its flag."""
    if "int" in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def add_train(sub) -> None:
    from dataclasses import MISSING, fields

    from unrolled import config as C

    p = sub.add_parser(
        "train", help="train a character language model on text (default: Python's own standard library)",
        description="Train a character language model with truncated BPTT. Every setting is a flag below and "
                    "may also be set in a TOML file (--config); flags win over the file, the file over the "
                    "defaults. Writes RUN/best/ and RUN/last/ checkpoints, RUN/metrics.jsonl and RUN/config.json. "
                    "Ctrl-C stops at the next window and saves, so --resume RUN continues exactly.")
    p.add_argument("paths", nargs="*", metavar="TEXT",
                   help="text files, directories or globs (default: the Python standard library's sources)")
    p.add_argument("--config", metavar="FILE", help="a TOML file setting any of the flags below (by field name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no printed config")
    p.add_argument("--verbose", action="store_true",
                   help="print every setting at the start (default: only those that differ from the defaults)")
    threads.add_flag(p)
    choices = {"cell": C.CELLS, "optimizer": C.OPTIMIZERS, "schedule": C.SCHEDULES, "clip": C.CLIPS,
               "bptt": C.BPTT, "unknown": C.UNKNOWN, "nonfinite": C.NONFINITE}
    helps = C.field_help()
    metavars = {"out": "DIR", "resume": "DIR", "init_from": "CKPT", "device": "DEVICE", "replacement": "CHAR"}
    for part, cls in C.PARTS.items():
        group = p.add_argument_group(f"{part} settings")
        for f in fields(cls):
            if f.name in ("paths", "progress"):
                continue
            flag = "--" + f.name.replace("_", "-")
            default = f.default if f.default is not MISSING else f.default_factory()
            text = f"{helps.get(f.name, '')} (default: {default})".replace("%", "%%")
            if str(f.type) == "bool":
                group.add_argument(flag, action="store_true", default=None, help=text)
            else:
                kind = _train_flag_type(str(f.type))
                metavar = None if f.name in choices else metavars.get(f.name, {int: "N", float: "X"}.get(kind, "VALUE"))
                group.add_argument(flag, type=kind, default=None, choices=choices.get(f.name), metavar=metavar,
                                   help=text)

    def run(args):
        from unrolled.config import field_names, load_toml
        from unrolled.train import train

        settings = load_toml(args.config) if args.config else {}
        if isinstance(settings.get("paths"), str):
            settings["paths"] = [settings["paths"]]
        names = field_names()
        settings.update({k: v for k, v in vars(args).items() if k in names and v is not None and k != "paths"})
        if args.paths:
            settings["paths"] = args.paths
        if args.quiet:
            settings["progress"] = False
        threads.use(args.threads)
        result = train(**settings, verbose=args.verbose)
        return 130 if result.stopped == "interrupted" else 0

    p.set_defaults(func=run)


def _print_stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained model, streamed as it is made",
                       description="Sample from a checkpoint: each character is fed back as the next input. "
                                   "--length counts new characters (the prime is printed first). The same "
                                   "--seed gives the same text; without one a seed is drawn and printed.")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("--length", type=int, default=500, help="new characters per sample (default 500)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the logits by this: below 1 more likely text, above 1 more surprising; 0 is argmax (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely characters")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample only from the most likely characters whose probability adds up to p (nucleus)")
    p.add_argument("--argmax", action="store_true", help="always take the most likely character (no randomness)")
    p.add_argument("--prime", default=None, metavar="TEXT", help="text the model reads before it writes")
    p.add_argument("--prime-file", default=None, metavar="FILE", help="read the prime text from a file")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and printed on stderr)")
    p.add_argument("--num-samples", type=int, default=1, help="samples drawn in parallel as one batch (default 1)")
    p.add_argument("--unknown", choices=("error", "skip", "replace"), default="error",
                   help="characters of the prime the model never saw: error (default), skip them, or replace them "
                        "with a space")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    threads.add_flag(p)

    def run(args):
        import random
        from pathlib import Path

        from unrolled.checkpoint import load
        from unrolled.sample import check_options, sample
        from unrolled.text import read_file
        from unrolled.train import pick_device

        if args.prime is not None and args.prime_file is not None:
            raise UserError("give --prime or --prime-file, not both")
        seed = args.seed
        check_options(args.length, args.temperature, args.top_k, args.top_p, args.num_samples, seed)
        threads.use(args.threads)
        model = load(args.checkpoint, device=pick_device(args.device))
        prime = args.prime or ""
        if args.prime_file is not None:
            prime = read_file(Path(args.prime_file), byte_level=model.vocab.byte_level,
                              suggest_byte_level=False)
        # the prime in the model's symbols, checked before anything is printed
        prime = model.vocab.decode(model.vocab.encode(prime, unknown=args.unknown,
                                                      what="--prime-file" if args.prime_file else "--prime"))
        if seed is None and not args.argmax:
            seed = random.SystemRandom().randrange(2**31)
            print(f"seed: {seed}", file=sys.stderr)
        options = dict(length=args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       argmax=args.argmax, prime=prime, seed=seed, num_samples=args.num_samples)
        if args.num_samples == 1:
            sample(model, **options, stream=_print_stream)
            _print_stream("\n")
            return 0
        for i, text in enumerate(sample(model, **options)):
            print(f"--- sample {i + 1} of {args.num_samples} ---\n{text}", flush=True)
        return 0

    p.set_defaults(func=run)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="bits per character and perplexity of text under a model",
                       description="Evaluate a checkpoint on text files: each file is read as --batch-size "
                                   "parallel streams with the hidden state carried through (as in training).")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("files", nargs="+", metavar="FILE", help="text files, directories or globs; each is scored")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=int, default=16, help="parallel streams (default 16; 1 scores every character)")
    p.add_argument("--seq-len", type=int, default=256, help="characters per forward window (default 256)")
    p.add_argument("--unknown", choices=("error", "skip", "replace"), default="error",
                   help="characters the model never saw: error (default), skip them, or replace them")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    threads.add_flag(p)

    def run(args):
        import json

        from unrolled.checkpoint import load
        from unrolled.evaluate import evaluate
        from unrolled.text import read_file, resolve_paths
        from unrolled.train import pick_device

        for flag, value in (("--batch-size", args.batch_size), ("--seq-len", args.seq_len)):
            if value <= 0:
                raise UserError(f"{flag} must be a positive integer, got {value}")
        threads.use(args.threads)
        model = load(args.checkpoint, device=pick_device(args.device))
        rows = []
        for f in resolve_paths(args.files):
            text = read_file(f, byte_level=model.vocab.byte_level, suggest_byte_level=False)
            if len(text) == 0:
                raise UserError(f"{f} is empty; give a file with some text in it")
            r = evaluate(model, text, batch_size=args.batch_size, seq_len=args.seq_len, unknown=args.unknown,
                         what=str(f))
            rows.append({"file": str(f), **r})
        if len(rows) > 1:
            chars = sum(r["chars"] for r in rows)
            nats = sum(r["nats_per_char"] * r["chars"] for r in rows) / chars
            import math
            rows.append({"file": "(all)", "bits_per_char": nats / math.log(2), "nats_per_char": nats,
                         "perplexity": math.exp(nats), "chars": chars})
        if args.json:
            print(json.dumps({"checkpoint": str(model.checkpoint_path), "results": rows}, indent=1))
            return 0
        width = max(len(r["file"]) for r in rows)
        print(f"{'file':<{width}}  {'chars':>10}  {'bits/char':>9}  {'perplexity':>10}")
        for r in rows:
            print(f"{r['file']:<{width}}  {r['chars']:>10,}  {r['bits_per_char']:>9.4f}  {r['perplexity']:>10.3f}")
        return 0

    p.set_defaults(func=run)


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print what a checkpoint holds: config, vocabulary, step, metrics, tensors")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("--json", action="store_true", help="print JSON")

    def run(args):
        import json

        from unrolled.checkpoint import describe

        d = describe(args.checkpoint)
        if args.json:
            print(json.dumps(d, indent=1, ensure_ascii=False))
            return 0
        print(f"checkpoint   {d['path']}  ({d['format']}, written by torch {d['written_by_torch']})")
        print(f"step         {d['step']}  (epoch {d['epoch']}, window {d['window']}, "
              f"{d['elapsed_minutes']:.1f} minutes of training)")
        print("metrics      " + ", ".join(f"{k} {v:.4f}" for k, v in d["metrics"].items() if isinstance(v, float)))
        v = d["vocab"]
        print(f"vocabulary   {v['size']} {v['kind']}: {json.dumps(v['symbols'], ensure_ascii=False)[:200]}")
        print(f"parameters   {d['parameters']:,}")
        for part, values in d["config"].items():
            print(f"[{part}]  " + ", ".join(f"{k}={val!r}" for k, val in values.items()))
        print("tensors      " + ", ".join(f"{k} {tuple(s)}" for k, s in d["model_tensors"].items()))
        print(f"optimizer    {d['optimizer']['tensors']} state tensors; "
              + ", ".join(f"{k}={val}" for k, val in (d["optimizer"]["param_groups"] or [{}])[0].items()
                          if k != "params"))
        print("carried      " + (", ".join(f"{k} {tuple(s)}" for k, s in d["carried_state"].items()) or "none"))
        print(f"rng          {', '.join(d['rng']) or 'none'}")
        return 0

    p.set_defaults(func=run)


def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run's training and validation curves (bits per character) as PNG")
    p.add_argument("run", help="a run directory (with metrics.jsonl)")
    p.add_argument("--out", default=None, metavar="PNG", help="where to write the PNG (default RUN/loss.png)")

    def run(args):
        from unrolled.plot import plot

        print(plot(args.run, args.out))
        return 0

    p.set_defaults(func=run)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train a small model for a few minutes, sample it, plot it",
                       description="Train a small LSTM language model on the Python standard library's own "
                                   "sources (or on TEXT) for a few minutes of wall-clock time, print samples "
                                   "(top-p 0.95, then unfiltered at temperature 1), draw the loss curves and say where the files are.")
    p.add_argument("paths", nargs="*", metavar="TEXT", help="text to train on (default: the Python standard library)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time (default 3)")
    p.add_argument("--out", default=None, help="run directory (default runs/demo-<date-time>)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    threads.add_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no printed config")
    p.add_argument("--verbose", action="store_true",
                   help="print every training setting at the start (default: only those that differ from the defaults)")

    def run(args):
        from datetime import datetime

        from unrolled.demo import demo

        if not (args.minutes > 0 and args.minutes < float("inf")):
            raise UserError(f"--minutes must be a positive number, got {args.minutes}")
        threads.use(args.threads)
        demo(minutes=args.minutes, out=args.out or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}",
             paths=args.paths, seed=args.seed, progress=not args.quiet, verbose=args.verbose)
        return 0

    p.set_defaults(func=run)

# --- understanding a trained network: cells, saturation, ngram ----------------------------------
def _understand_common(p) -> None:
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="use this part of the file, split 80/10/10 by position as training does (default: all)")
    p.add_argument("--max-chars", type=int, default=None, metavar="N", help="use at most the first N characters")
    threads.add_flag(p)
    p.add_argument("--unknown", choices=("error", "skip", "replace"), default="error",
                   help="characters the model never saw: error (default), skip them, or replace them with a space")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_cells(sub) -> None:
    p = sub.add_parser(
        "cells", help="find the units of a trained model that track features of a text (comments, quotes, ...)",
        description="Record every unit of the model over the text, label every character with each feature, "
                    "score every unit against every feature (ROC AUC for yes/no features, Pearson r for "
                    "numbers), print the best units per feature and write an HTML report that colours them "
                    "over an excerpt (blue negative, white zero, red positive) with the model's predictions.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read (ideally text the model never trained on)")
    p.add_argument("--feature", action="append", dest="features", metavar="SPEC",
                   help="a feature to score: a built-in name, NAME=REGEX, or module:function; repeatable "
                        "(default: the language's built-in features)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="best units to report per feature (default 5)")
    p.add_argument("--out", default="cells.html", metavar="HTML", help="the report to write (default cells.html)")
    p.add_argument("--png-dir", default=None, metavar="DIR", help="also draw the best unit of each feature as DIR/<feature>.png")
    p.add_argument("--language", default="auto", choices=["auto", "c", "python", "prose"],
                   help="how to find comments and strings (default: guessed from the text)")
    p.add_argument("--states", default=None, metavar="KEYS",
                   help="quantities to search, comma-separated: h, c, i, f, g, o, r, z, n (default: h,c for an LSTM, h otherwise)")
    p.add_argument("--sample", type=int, default=200_000, metavar="N", help="characters scored, evenly spaced (default 200000)")
    p.add_argument("--excerpt", type=int, default=2000, metavar="N", help="characters drawn in the report (default 2000)")
    p.add_argument("--save", default=None, metavar="FILE", help="also save the recording (.npz or .safetensors)")
    _understand_common(p)

    def run(args):
        from unrolled.understand.commands import cells
        return cells(args.checkpoint, args.file, features=args.features, top=args.top, out=args.out,
                     png_dir=args.png_dir, language=args.language, states=args.states, sample=args.sample,
                     excerpt=args.excerpt, split=args.split, max_chars=args.max_chars, save=args.save,
                     threads=threads.use(args.threads), as_json=args.json, unknown=args.unknown)

    p.set_defaults(func=run)


def add_saturation(sub) -> None:
    p = sub.add_parser(
        "saturation", help="how often each gate is shut (< 0.1) or wide open (> 0.9), with the scatter plot",
        description="Record the sigmoid gates of the model over the text and report, per gate and layer, the "
                    "fraction of steps each unit is left-saturated (< 0.1) and right-saturated (> 0.9); draw "
                    "the scatter plot of Karpathy, Johnson and Fei-Fei (2015) as a PNG.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--png", default="saturation.png", help="the plot to write (default saturation.png)")
    _understand_common(p)

    def run(args):
        from unrolled.understand.commands import saturation
        return saturation(args.checkpoint, args.file, png=args.png, split=args.split, max_chars=args.max_chars,
                          threads=threads.use(args.threads), as_json=args.json, unknown=args.unknown)

    p.set_defaults(func=run)


def add_ngram(sub) -> None:
    p = sub.add_parser(
        "ngram", help="Kneser-Ney character n-grams on a file's train split, scored on its test split",
        description="Fit interpolated Kneser-Ney character n-gram models on the first 80% of the file and "
                    "report bits per character on its last 10%; with --model, also the trained model on the "
                    "same characters and where each errs (p < 0.5) by the kind of character.")
    p.add_argument("file", help="a UTF-8 text file")
    p.add_argument("--orders", default="1,2,3,5,10,20", help="n-gram orders to report, 1..20 (default 1,2,3,5,10,20)")
    p.add_argument("--model", default=None, metavar="CKPT", help="a checkpoint to compare (and analyse errors) against")
    p.add_argument("--language", default="auto", choices=["auto", "c", "python", "prose"],
                   help="for the error analysis: how to find comments and strings (default: guessed)")
    p.add_argument("--max-chars", type=int, default=None, metavar="N", help="use at most N characters of each split")
    threads.add_flag(p)
    p.add_argument("--unknown", choices=("error", "replace"), default="error",
                   help="with --model: characters the model never saw: error (default), or replace them with a "
                        "space (skipping them would shift the model against the n-grams)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    def run(args):
        from unrolled.understand.commands import ngram
        return ngram(args.file, orders=args.orders, checkpoint=args.model, max_chars=args.max_chars,
                     language=args.language, threads=threads.use(args.threads), as_json=args.json,
                     unknown=args.unknown)

    p.set_defaults(func=run)

def add_match(sub) -> None:
    p = sub.add_parser(
        "match", help="the LSTMVis query: units on across a span of text, and where else they fire",
        description="Select a span of the text (START:END, in characters); the units that are on "
                    "(> threshold) across the whole span and off just before and after it are selected, "
                    "then the other stretches of the text where they are on together are listed, best first "
                    "(most selected units on, fewest other units on, longest).")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--span", required=True, metavar="START:END", help="the selected characters, e.g. 120:140")
    p.add_argument("--threshold", type=float, default=0.3, help="a unit is on above this value (default 0.3)")
    p.add_argument("--states", default="h", metavar="KEYS", help="quantities to select from, comma-separated (default h)")
    p.add_argument("--pad", type=int, default=1, metavar="N", help="characters on each side that must be off (default 1)")
    p.add_argument("--min-on", type=int, default=None, metavar="N",
                   help="a match needs this many selected units on (default: all of them)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="matches to list (default 10)")
    _understand_common(p)

    def run(args):
        from unrolled.understand.commands import select_match
        return select_match(args.checkpoint, args.file, args.span, threshold=args.threshold, states=args.states,
                            pad=args.pad, min_on=args.min_on, top=args.top, split=args.split,
                            max_chars=args.max_chars, threads=threads.use(args.threads), as_json=args.json,
                            unknown=args.unknown)

    p.set_defaults(func=run)

COMMANDS = [add_hello, add_prepare, add_serve, add_bench, add_train, add_sample, add_eval, add_inspect,
            add_plot, add_demo, add_cells, add_saturation, add_ngram, add_match]


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
