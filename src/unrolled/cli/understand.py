"""`unrolled cells`, `saturation`, `ngram` and `match`: looking inside a trained network.

Each command reads its flags, loads the model and the text, makes one call into
`unrolled.understand` and prints the result as a table (or as JSON with --json).
"""
from __future__ import annotations

import json
from pathlib import Path

from unrolled import threads
from unrolled.charlm.run import load
from unrolled.charlm.text import UNKNOWN_POLICIES
from unrolled.errors import UserError
from unrolled.understand import analyses, report
from unrolled.understand.record import fit_to_vocabulary
from unrolled.understand.render import show_char


def _common_flags(p) -> None:
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="use this part of the file, split 80/10/10 by position as training does (default: all)")
    p.add_argument("--max-chars", type=int, default=None, metavar="N", help="use at most the first N characters")
    threads.add_flag(p)
    p.add_argument("--unknown", choices=UNKNOWN_POLICIES, default="error",
                   help="characters the model never saw: error (default), skip them, or replace them with a space")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _model_and_text(args):
    """The checkpoint and the file (its --split, cut to --max-chars) in the model's characters."""
    model = load(args.checkpoint)
    text = analyses.read_text(args.file, args.split, args.max_chars)
    return model, fit_to_vocabulary(model, text, args.unknown, str(args.file))


def _print_json(result) -> int:
    print(json.dumps(result, indent=1))
    return 0


# --- cells --------------------------------------------------------------------------------------
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
    _common_flags(p)
    p.set_defaults(func=run_cells)


def run_cells(args) -> int:
    threads.use(args.threads)
    if args.top < 1:
        raise UserError(f"--top must be a positive integer, got {args.top}")
    if args.sample is not None and args.sample < 2:
        raise UserError(f"--sample must be at least 2, got {args.sample}")
    if args.excerpt < 1:
        raise UserError(f"--excerpt must be a positive integer, got {args.excerpt}")
    if args.out is not None and not Path(args.out).parent.exists():
        raise UserError(f"--out {args.out}: the folder {Path(args.out).parent} does not exist; create it first")
    model, text = _model_and_text(args)
    result = report.cells(model, text, features=args.features, language=args.language, top=args.top,
                          states=tuple(args.states.split(",")) if args.states else None, sample=args.sample,
                          excerpt=args.excerpt, html=args.out, png_dir=args.png_dir, save_to=args.save,
                          name=str(args.file))
    if args.json:
        return _print_json(result)
    print(f"{result['chars']:,} characters of {args.file}" + (f" ({args.split} split)" if args.split != "all" else "")
          + f", {result['scored_chars']:,} scored, {result['units']} units, language {result['language']}, "
          f"{result['bits_per_char']:.3f} bits/char")
    print("\n".join(report.table_lines(result)))
    sec = result["seconds"]
    print(f"record {sec['record']:.1f}s, features {sec['features']:.1f}s, search {sec['search']:.1f}s, "
          f"drawing {sec['render']:.1f}s, total {sec['total']:.1f}s")
    if result["html"]:
        print(f"wrote {result['html']}")
    for png in result["pngs"]:
        print(f"wrote {png}")
    return 0


# --- saturation ---------------------------------------------------------------------------------
def add_saturation(sub) -> None:
    p = sub.add_parser(
        "saturation", help="how often each gate is shut (< 0.1) or wide open (> 0.9), with the scatter plot",
        description="Record the sigmoid gates of the model over the text and report, per gate and layer, the "
                    "fraction of steps each unit is left-saturated (< 0.1) and right-saturated (> 0.9); draw "
                    "the scatter plot of Karpathy, Johnson and Fei-Fei (2015) as a PNG.")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("file", help="a UTF-8 text file to read")
    p.add_argument("--png", default="saturation.png", help="the plot to write (default saturation.png)")
    _common_flags(p)
    p.set_defaults(func=run_saturation)


def run_saturation(args) -> int:
    threads.use(args.threads)
    model, text = _model_and_text(args)
    rows = analyses.saturation(model, text, png=args.png, what=args.checkpoint, name=str(args.file))
    if args.json:
        return _print_json(rows)
    print(f"{'gate':<13} {'layer':>5} {'left <0.1':>10} {'right >0.9':>11} {'units mostly shut':>18} {'mostly open':>12}")
    for r in rows:
        print(f"{r['gate']:<13} {r['layer']:>5} {r['mean_left']:>10.3f} {r['mean_right']:>11.3f} "
              f"{r['units_mostly_shut']:>18.3f} {r['units_mostly_open']:>12.3f}")
    if args.png:
        print(f"wrote {args.png}")
    return 0


# --- ngram --------------------------------------------------------------------------------------
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
    p.set_defaults(func=run_ngram)


def _orders(text: str) -> list[int]:
    """--orders "1,3,5" -> [1, 3, 5], sorted, each in 1..20."""
    try:
        orders = sorted({int(x) for x in str(text).split(",")})
    except ValueError:
        raise UserError(f"--orders must be a comma-separated list of integers, got {text!r}") from None
    if not orders or orders[0] < 1 or orders[-1] > 20:
        raise UserError(f"--orders must lie in 1..20, got {text!r}")
    return orders


def run_ngram(args) -> int:
    threads.use(args.threads)
    orders = _orders(args.orders)
    train = analyses.read_text(args.file, "train", args.max_chars)
    test = analyses.read_text(args.file, "test", args.max_chars)
    model = load(args.model) if args.model is not None else None
    result = analyses.ngram(train, test, orders, model=model, language=args.language, unknown=args.unknown,
                            name=f"the test split of {args.file}")
    if args.json:
        return _print_json(result)
    print(f"train {result['train_chars']:,} characters, test {result['test_chars']:,}, vocabulary {result['vocab']}; "
          f"Kneser-Ney up to order {orders[-1]} in {result['ngram_seconds']:.1f}s")
    print(f"{'model':<16} {'bits/char':>9} {'nats/char':>9}")
    for r in result["rows"]:
        print(f"{r['model']:<16} {r['bits_per_char']:>9.3f} {r['nats_per_char']:>9.3f}")
    if "errors" in result:
        print(f"\nerrors (p < 0.5) of the model and of the {result['errors_against']}, by the kind of character predicted:")
        print(f"{'kind':<38} {'count':>8} {'model':>7} {'n-gram':>7} {'only model right':>17} {'only n-gram right':>18}")
        for r in result["errors"]:
            print(f"{r['kind']:<38} {r['count']:>8,} {r['model_errors']:>7.3f} {r['ngram_errors']:>7.3f} "
                  f"{r['model_only_right']:>17.3f} {r['ngram_only_right']:>18.3f}")
    return 0


# --- match --------------------------------------------------------------------------------------
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
    _common_flags(p)
    p.set_defaults(func=run_match)


def run_match(args) -> int:
    threads.use(args.threads)
    try:
        a, b = (int(x) for x in args.span.split(":"))
    except ValueError:
        raise UserError(f"--span must be START:END in characters, like 120:140, got {args.span!r}") from None
    model, text = _model_and_text(args)
    if not 0 <= a < b <= len(text):
        raise UserError(f"--span {args.span} must lie within the text's 0:{len(text)} and be non-empty")
    result = analyses.span_match(model, text, a, b, threshold=args.threshold, states=args.states.split(","),
                                 pad=args.pad, min_on=args.min_on, top=args.top, name=str(args.file))
    if args.json:
        return _print_json(result)
    snippet = lambda i, j: "".join(show_char(c) if c in "\n\t" else c for c in text[i:j])  # noqa: E731
    units = result["units"]
    print(f"selected {snippet(a, b)!r} ({a}:{b}); {len(units)} unit(s) on across it and off around it "
          f"(threshold {args.threshold}): {', '.join(units) or 'none'}")
    for m in result["matches"]:
        context = snippet(max(0, m["start"] - 15), m["start"]) + "[" + snippet(m["start"], m["end"]) + "]" + \
            snippet(m["end"], m["end"] + 15)
        print(f"{m['start']:>9}:{m['end']:<9} on {m['intersection']}/{len(units)}, union {m['union']:>3}  {context}")
    return 0
