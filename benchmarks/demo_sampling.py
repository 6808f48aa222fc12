"""Which sampling settings make the demo's samples read as text, measured on a demo run.

    unrolled demo --out runs/demo            # or any run trained on the default corpus
    python benchmarks/demo_sampling.py runs/demo [--seeds 20] > demo_sampling.json

For each setting (temperatures, and nucleus top-p at temperature 1), `--seeds` samples of 400
characters after the demo's prime `def ` are scored against the held-out end of the default
corpus the run trained on:
- bits/char under a Kneser-Ney 5-gram fitted on the training part (how much the sample looks
  like the corpus locally; a repetitive sample scores low here too, so it is not enough alone);
- the longest run of one repeated character, and the share of whitespace (the corpus's own
  share is printed beside it): the failure of low temperatures is runs of spaces and newlines;
- distinct words / words (a sample that repeats a line over and over scores low).
The rule the demo follows: among the settings whose whitespace share is at most 1.2x the
corpus's and whose median longest run is at most 1.5x the corpus's own (the median over random
400-character stretches of the held-out text), the one with the lowest 5-gram bits/char.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys

import numpy as np

from unrolled.charlm.run import load
from unrolled.charlm.sample import sample
from unrolled.charlm.text import default_corpus, split_bounds
from unrolled.understand.ngram import log_probs

SETTINGS = [{"temperature": t} for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)] + \
           [{"temperature": 1.0, "top_p": p} for p in (0.8, 0.9, 0.95)] + \
           [{"temperature": 0.8, "top_p": 0.95}]


def longest_run(text: str) -> int:
    return max((len(m.group(0)) for m in re.finditer(r"(.)\1*", text, re.S)), default=0)


def whitespace(text: str) -> float:
    return sum(c.isspace() for c in text) / max(1, len(text))


def distinct_words(text: str) -> float:
    words = re.findall(r"\w+", text)
    return len(set(words)) / max(1, len(words))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a demo run directory (trained on the default corpus)")
    ap.add_argument("--seeds", type=int, default=20, help="samples per setting (default 20)")
    ap.add_argument("--length", type=int, default=400)
    args = ap.parse_args()
    model = load(args.run)
    text = default_corpus()
    a, b = split_bounds(len(text), (0.9, 0.05, 0.05))  # the demo's split
    train, held = text[:a], text[b:]
    chars = sorted(set(text) | set(model.vocab.chars))
    index = {c: i for i, c in enumerate(chars)}
    ids = lambda s: np.fromiter((index[c] for c in s), dtype=np.int64, count=len(s))  # noqa: E731
    rng = random.Random(0)
    stretches = [held[i:i + args.length] for i in (rng.randrange(len(held) - args.length) for _ in range(200))]
    corpus = {"whitespace": whitespace(held), "longest_run_median": statistics.median(map(longest_run, stretches)),
              "distinct_words": statistics.median(map(distinct_words, stretches))}
    corpus["ngram5_bpc"] = float(-log_probs(ids(train), ids("".join(stretches[:50])), 5, len(chars))[4].mean()
                                 / math.log(2))
    rows = []
    for setting in SETTINGS:
        samples = [sample(model, length=args.length, prime="def ", seed=s, **setting)[4:] for s in range(args.seeds)]
        lp = log_probs(ids(train), ids("".join(samples)), 5, len(chars))[4]
        row = {**setting, "ngram5_bpc": float(-lp.mean() / math.log(2)),
               "whitespace": statistics.mean(map(whitespace, samples)),
               "longest_run_median": statistics.median(map(longest_run, samples)),
               "longest_run_max": max(map(longest_run, samples)),
               "distinct_words": statistics.median(map(distinct_words, samples))}
        row["reads_as_text"] = (row["whitespace"] <= 1.2 * corpus["whitespace"]
                                and row["longest_run_median"] <= 1.5 * corpus["longest_run_median"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    ok = [r for r in rows if r["reads_as_text"]]
    best = min(ok, key=lambda r: r["ngram5_bpc"]) if ok else None
    print(json.dumps({"run": args.run, "seeds": args.seeds, "length": args.length, "corpus": corpus,
                      "settings": rows, "chosen": best}, indent=1))


if __name__ == "__main__":
    main()
