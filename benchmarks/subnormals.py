"""What subnormal floats cost a training run: the compiled step loops flushing them (the default)
against keeping them (UNROLLED_NATIVE_SUBNORMALS=keep), characters per second, interleaved.

    python benchmarks/subnormals.py CORPUS [--cells minlstm mingru lstm] [--steps 200] [--repeats 2]

Each point is a real `unrolled train CORPUS --cell C --hidden-size 256 --num-layers 2 --max-steps N
--threads 1 --seed 0` process (the size of benchmarks/minimal_quality.py; batch 32, window 128),
no validation before the end; its speed is
the median of the chars/s rows it logs after the first 50 updates, by when the gates of a minLSTM
on real text have saturated enough to make subnormals. The two settings alternate within each
repeat and cell. Also reported: the loss of the last logged row of each, which should agree (a
subnormal is zero to everything it is added to). Prints one JSON object (and, with --out, writes
it) and a Markdown table on stderr.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quality_setup import not_a_corpus, write_result
from unrolled.charlm.plot import read_metrics


def one_run(corpus: Path, cell: str, mode: str, steps: int, folder: Path) -> dict:
    run = folder / f"{cell}-{mode}-{time.monotonic_ns()}"
    env = {**os.environ, "UNROLLED_NATIVE_SUBNORMALS": mode}
    cmd = [sys.executable, "-m", "unrolled", "train", str(corpus), "--cell", cell, "--hidden-size", "256",
           "--num-layers", "2", "--max-steps", str(steps), "--eval-every", "1000000",
           "--threads", "1", "--seed", "0", "--device", "cpu", "--quiet", "--out", str(run)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"subnormals.py: unrolled train failed: {out.stderr.strip()[-500:]}")
    train = [r for r in read_metrics(run) if r.get("split") == "train" and "chars_per_sec" in r]
    late = [r["chars_per_sec"] for r in train if r["step"] > 50] or [r["chars_per_sec"] for r in train]
    return {"chars_per_sec": statistics.median(late), "last_loss": train[-1]["loss"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", help="a UTF-8 text file")
    ap.add_argument("--cells", nargs="+", default=["minlstm", "mingru", "lstm"],
                    choices=["rnn", "lstm", "gru", "mingru", "minlstm"])
    ap.add_argument("--steps", type=int, default=200, help="updates per run (default 200)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cell and setting (default 2)")
    ap.add_argument("--out", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not_a_corpus("subnormals.py", corpus):
        return 2
    if args.steps <= 60:
        print("subnormals.py: --steps must be above 60 (the first 50 updates are not timed)", file=sys.stderr)
        return 2
    result = {"corpus": corpus.name, "steps": args.steps, "repeats": args.repeats, "cells": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            runs = {"flush": [], "keep": []}
            for r in range(args.repeats):
                for mode in (("flush", "keep") if r % 2 == 0 else ("keep", "flush")):
                    print(f"subnormals.py: {cell}, subnormals {mode}, run {r + 1} of {args.repeats}", file=sys.stderr)
                    runs[mode].append(one_run(corpus, cell, mode, args.steps, Path(tmp)))
            flush = statistics.median(x["chars_per_sec"] for x in runs["flush"])
            keep = statistics.median(x["chars_per_sec"] for x in runs["keep"])
            result["cells"][cell] = {"flush_chars_per_sec": flush, "keep_chars_per_sec": keep,
                                     "speedup": flush / keep, "runs": runs}
    write_result(result, args.out)
    print("\n| cell | subnormals kept: chars/s | flushed (default): chars/s | speedup | last loss kept / flushed |\n"
          "| --- | ---: | ---: | ---: | --- |", file=sys.stderr)
    for cell, c in result["cells"].items():
        losses = f"{c['runs']['keep'][0]['last_loss']:.4f} / {c['runs']['flush'][0]['last_loss']:.4f}"
        print(f"| {cell} | {c['keep_chars_per_sec']:,.0f} | {c['flush_chars_per_sec']:,.0f} | "
              f"{c['speedup']:.2f}x | {losses} |", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
