"""`unrolled train`, `sample`, `eval`, `inspect`, `plot` and `demo`: character language models.

Each command is a thin wrapper over the library function of the same name (`unrolled.train`,
`unrolled.sample`, `unrolled.evaluate`, `charlm.describe`, `plot.plot`, `demo.demo`): it
reads its flags, makes that call and prints the result.
"""
from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import MISSING, fields
from datetime import datetime
from pathlib import Path

from unrolled import threads
from unrolled.charlm import config as C
from unrolled.charlm import dynamic
from unrolled.charlm.clamp import parse_clamp
from unrolled.charlm.demo import demo
from unrolled.charlm.device import pick_device
from unrolled.charlm.evaluate import evaluate, runaway_warning
from unrolled.charlm.plot import plot
from unrolled.charlm.run import describe, load
from unrolled.charlm.sample import check_options, sample
from unrolled.charlm.snapshots import train_with_snapshots
from unrolled.charlm.text import UNKNOWN_POLICIES, read_file, resolve_paths, split_bounds
from unrolled.charlm.trainer import train
from unrolled.errors import UserError


# --- train --------------------------------------------------------------------------------------
def _flag_type(annotation: str):
    """A config field's annotation -> the argparse type of its flag."""
    if "int" in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def _add_setting_flags(p) -> None:
    """One flag per field of the config, grouped by part; its help is the field's comment and default."""
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
                kind = _flag_type(str(f.type))
                metavar = None if f.name in choices else metavars.get(f.name, {int: "N", float: "X"}.get(kind, "VALUE"))
                group.add_argument(flag, type=kind, default=None, choices=choices.get(f.name), metavar=metavar,
                                   help=text)


def add_train(sub) -> None:
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
    p.add_argument("--snapshot-every", type=int, default=None, metavar="N",
                   help="also keep the weights every N updates in RUN/snapshots/, for `unrolled emergence`")
    threads.add_flag(p)
    _add_setting_flags(p)
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    settings = C.load_toml(args.config) if args.config else {}
    if isinstance(settings.get("paths"), str):
        settings["paths"] = [settings["paths"]]
    names = C.field_names()
    settings.update({k: v for k, v in vars(args).items() if k in names and v is not None and k != "paths"})
    if args.paths:
        settings["paths"] = args.paths
    if args.quiet:
        settings["progress"] = False
    threads.use(args.threads)
    if args.snapshot_every is not None:
        result = train_with_snapshots(args.snapshot_every, **settings, verbose=args.verbose)
    else:
        result = train(**settings, verbose=args.verbose)
    return 130 if result.stopped == "interrupted" else 0


# --- sample -------------------------------------------------------------------------------------
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
    p.add_argument("--unknown", choices=UNKNOWN_POLICIES, default="error",
                   help="characters of the prime the model never saw: error (default), skip them, or replace them "
                        "with a space")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    p.add_argument("--clamp", action="append", default=None, metavar="UNIT=VALUE",
                   help="hold a unit at a value while writing, named as `unrolled cells` names it "
                        "(h1:12, c1:97=3); repeatable (docs/understanding.md)")
    threads.add_flag(p)
    p.set_defaults(func=run_sample)


def run_sample(args) -> int:
    if args.prime is not None and args.prime_file is not None:
        raise UserError("give --prime or --prime-file, not both")
    seed = args.seed
    check_options(args.length, args.temperature, args.top_k, args.top_p, args.num_samples, seed)
    threads.use(args.threads)
    model = load(args.checkpoint, device=pick_device(args.device))
    prime = args.prime or ""
    if args.prime_file is not None:
        prime = read_file(Path(args.prime_file), byte_level=model.vocab.byte_level, suggest_byte_level=False)
    # the prime in the model's symbols, checked before anything is printed
    prime = model.vocab.decode(model.vocab.encode(prime, unknown=args.unknown,
                                                  what="--prime-file" if args.prime_file else "--prime"))
    clamps = [parse_clamp(c, model.rnn) for c in args.clamp or []]
    if seed is None and not args.argmax:
        seed = random.SystemRandom().randrange(2**31)
        print(f"seed: {seed}", file=sys.stderr)
    options = dict(length=args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   argmax=args.argmax, prime=prime, seed=seed, num_samples=args.num_samples,
                   clamps=clamps)
    if args.num_samples == 1:
        sample(model, **options, stream=_print_stream)
        _print_stream("\n")
        return 0
    for i, text in enumerate(sample(model, **options)):
        print(f"--- sample {i + 1} of {args.num_samples} ---\n{text}", flush=True)
    return 0


# --- eval ---------------------------------------------------------------------------------------
def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="bits per character and perplexity of text under a model",
                       description="Evaluate a checkpoint on text files: each file is read as --batch-size "
                                   "parallel streams with the hidden state carried through (as in training).")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("files", nargs="+", metavar="FILE", help="text files, directories or globs; each is scored")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=int, default=None,
                   help="parallel streams (default 16, or 1 with --dynamic; 1 scores every character)")
    p.add_argument("--seq-len", type=int, default=256, help="characters per forward window (default 256)")
    p.add_argument("--unknown", choices=UNKNOWN_POLICIES, default="error",
                   help="characters the model never saw: error (default), skip them, or replace them")
    p.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                   help="score only this part of each file, cut by position with the checkpoint's "
                        "fractions as training cut its text (default: all of it)")
    p.add_argument("--streams", action="store_true",
                   help="also print each stream's bits/char (a stream that runs away, scoring worse than "
                        "the text's character frequencies and twice the median stream, is said anyway)")
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic evaluation (Krause et al. 2018): learn from each segment after scoring "
                        "it; also prints the same reading without it")
    p.add_argument("--dynamic-segment", type=int, default=dynamic.DEFAULT_SEGMENT,
                   help=f"with --dynamic: characters per update (default {dynamic.DEFAULT_SEGMENT})")
    p.add_argument("--dynamic-lr", type=float, default=dynamic.DEFAULT_LR,
                   help=f"with --dynamic: SGD step on the segment's mean loss (default {dynamic.DEFAULT_LR})")
    p.add_argument("--dynamic-decay", type=float, default=dynamic.DEFAULT_DECAY,
                   help=f"with --dynamic: pull toward the trained weights per update (default {dynamic.DEFAULT_DECAY})")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    threads.add_flag(p)
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    if args.batch_size is None:
        args.batch_size = 1 if args.dynamic else 16
    for flag, value in (("--batch-size", args.batch_size), ("--seq-len", args.seq_len)):
        if value <= 0:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.dynamic:
        dynamic.check_dynamic(args.dynamic_segment, args.dynamic_lr, args.dynamic_decay)
        if args.streams:
            raise UserError("--streams reports the plain reading of each stream; give it without --dynamic")
    threads.use(args.threads)
    model = load(args.checkpoint, device=pick_device(args.device))
    rows = []
    for f in resolve_paths(args.files):
        text = read_file(f, byte_level=model.vocab.byte_level, suggest_byte_level=False)
        if len(text) == 0:
            raise UserError(f"{f} is empty; give a file with some text in it")
        text, what = _part(model, text, args.split, f)
        if args.dynamic:
            r = dynamic.evaluate_dynamic(model, text, batch_size=args.batch_size, segment=args.dynamic_segment,
                                         lr=args.dynamic_lr, decay=args.dynamic_decay, unknown=args.unknown,
                                         what=what, progress=True)
        else:
            r = evaluate(model, text, batch_size=args.batch_size, seq_len=args.seq_len, unknown=args.unknown,
                         what=what)
            warning = runaway_warning(r, what)
            if warning:
                print(f"unrolled: note: {warning}; see each stream with --streams", file=sys.stderr)
        rows.append({"file": str(f), "split": args.split, **r})
    if len(rows) > 1:  # the files together: nats per character weighted by each file's characters
        chars = sum(r["chars"] for r in rows)
        nats = sum(r["nats_per_char"] * r["chars"] for r in rows) / chars
        rows.append({"file": "(all)", "bits_per_char": nats / math.log(2), "nats_per_char": nats,
                     "perplexity": math.exp(nats), "chars": chars})
    if args.json:
        print(json.dumps({"checkpoint": str(model.checkpoint_path), "results": rows}, indent=1))
        return 0
    width = max(len(r["file"]) for r in rows)
    extra = f"  {'static':>9}  {'gain':>7}" if args.dynamic else ""
    print(f"{'file':<{width}}  {'chars':>10}  {'bits/char':>9}  {'perplexity':>10}{extra}")
    for r in rows:
        extra = (f"  {r['static_bits_per_char']:>9.4f}  {r['gain_bits_per_char']:>7.4f}"
                 if "gain_bits_per_char" in r else "")
        print(f"{r['file']:<{width}}  {r['chars']:>10,}  {r['bits_per_char']:>9.4f}  {r['perplexity']:>10.3f}{extra}")
    if args.streams:
        for r in rows:
            if "streams" in r:
                _print_streams(r)
    return 0


def _print_streams(r: dict) -> None:
    """Each stream of one file's reading: where it starts, its characters and bits/char."""
    print(f"\n{r['file']}: {len(r['streams'])} streams, median {r['median_stream_bits_per_char']:.4f} bits/char, "
          f"the text's character frequencies {r['unigram_bits_per_char']:.4f}")
    runaway = {s["stream"] for s in r["runaway_streams"]}
    print(f"{'stream':>6}  {'from char':>10}  {'chars':>10}  {'bits/char':>9}")
    for s in r["streams"]:
        mark = "  runs away" if s["stream"] in runaway else ""
        print(f"{s['stream'] + 1:>6}  {s['start']:>10,}  {s['chars']:>10,}  {s['bits_per_char']:>9.4f}{mark}")


def _part(model, text, split: str, path) -> tuple:
    """The --split part of a file's text, cut as training cut its corpus, and its name for messages."""
    if split == "all":
        return text, str(path)
    data = model.data_config
    val, test = data.val_fraction, data.test_fraction
    a, b = split_bounds(len(text), (1 - val - test, val, test))
    part = {"train": text[:a], "val": text[a:b], "test": text[b:]}[split]
    if len(part) < 2:
        raise UserError(f"the {split} part of {path} has fewer than two characters; "
                        "give a longer file or --split all")
    return part, f"the {split} part of {path}"


# --- inspect ------------------------------------------------------------------------------------
def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print what a checkpoint holds: config, vocabulary, step, metrics, tensors")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
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


# --- plot ---------------------------------------------------------------------------------------
def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run's training and validation curves (bits per character) as PNG")
    p.add_argument("run", help="a run directory (with metrics.jsonl)")
    p.add_argument("--out", default=None, metavar="PNG", help="where to write the PNG (default RUN/loss.png)")
    p.set_defaults(func=run_plot)


def run_plot(args) -> int:
    print(plot(args.run, args.out))
    return 0


# --- demo ---------------------------------------------------------------------------------------
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
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    if not (args.minutes > 0 and args.minutes < float("inf")):
        raise UserError(f"--minutes must be a positive number, got {args.minutes}")
    threads.use(args.threads)
    demo(minutes=args.minutes, out=args.out or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}",
         paths=args.paths, seed=args.seed, progress=not args.quiet, verbose=args.verbose)
    return 0
