"""Evidence that the Linux model uses what it tracks: every figure of docs/understanding.md's
"Evidence" section, from one checkpoint and the Linux corpus file, in a few minutes on one thread.

    python benchmarks/evidence_linux.py models/linux-lstm-2x128 kernel.txt [--chars 150000] [--out evidence.json]

On the test split of the file (its last 10% by position, which training never reads), first
--chars characters:

1. probes with controls (`unrolled.understand.probe`) on each layer: position in the line (ridge,
   Pearson r) and inside a string (logistic, AUC), with the best single unit and selectivity;
2. the best comment unit and the best string unit (`search.rank_units`, as `unrolled cells`
   finds them), each set to zero and to its mean (`unrolled.understand.intervene`) against
   --controls random units of its layer and kind, over the first --ablate-chars characters:
   delta bits/char overall and inside the feature, and the percentiles among the controls;
3. the string unit clamped while the model writes (`unrolled.sample`, the same seed with and
   without the clamp): at its mean inside strings and at its mean outside them, how many
   double quotes the samples hold and what part of them the lexer puts inside a string.

Prints a summary on stderr and one JSON object on stdout (or writes it to --out).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import unrolled
from unrolled.charlm.clamp import parse_clamp
from unrolled.understand.analyses import read_text
from unrolled.understand.features import compute as compute_features
from unrolled.understand.intervene import intervene
from unrolled.understand.probe import probe
from unrolled.understand.record import record
from unrolled.understand.report import sample_positions
from unrolled.understand.search import rank_units
from unrolled.errors import UserError
from linux_corpus import have_kernel

PRIMES = ('\tif (!dev) {\n\t\tpr_err(', '\tseq_printf(m, ', '/*\n * ')


def best_units(model, text: str) -> dict:
    """The best unit (h and c of every layer) for comments and strings, with its mean in and out."""
    rows = sample_positions(len(text), 100_000)
    rec = record(model, text, keys=("h", "c"), positions=rows, probs=False, warmup=256)
    values, names = rec.units(("h", "c"))
    labels = {k: v[rows] for k, v in compute_features(text, ["in_comment", "in_string"], "c").items()}
    table = rank_units(values, names, labels, top=1)
    out = {}
    for f, entry in table.items():
        b = entry["best"][0]
        col, y = values[:, b["index"]], labels[f]
        out[f] = {"unit": b["unit"], "auc": b["score"], "mean_inside": float(col[y].mean()),
                  "mean_outside": float(col[~y].mean())}
    return out


def ablations(model, text: str, units: dict, controls: int) -> dict:
    out = {}
    for f, u in units.items():
        for mode in ("zero", "mean"):
            r = intervene(model, text, u["unit"], mode, controls=controls, seed=0, features=[f], language="c")
            out[f"{f}/{mode}"] = {"unit": u["unit"], "value": r["value"], "delta_bpc": r["delta_bpc"],
                                  "delta_inside": r["by_feature"][f]["inside"],
                                  "delta_outside": r["by_feature"][f]["outside"],
                                  "percentile": r["controls"]["percentile"],
                                  "percentile_inside": r["controls"]["by_feature"][f],
                                  "controls_delta_bpc_median": float(np.median(r["controls"]["delta_bpc"]))}
    return out


def clamped_samples(model, unit: dict, length: int, seed: int) -> dict:
    """Samples from each prime, free and with the string unit held in and out of strings."""
    conditions = {"free": [], "held inside": [f"{unit['unit']}={unit['mean_inside']:.4f}"],
                  "held outside": [f"{unit['unit']}={unit['mean_outside']:.4f}"]}
    out = {}
    for name, specs in conditions.items():
        clamps = [parse_clamp(s, model.rnn) for s in specs]
        texts = []
        for i, prime in enumerate(PRIMES):
            texts += unrolled.sample(model, length=length, prime=prime, seed=seed + i, num_samples=4,
                                     clamps=clamps, temperature=0.8)
        written = [t[len(p):] for t, p in zip(texts, [p for p in PRIMES for _ in range(4)])]
        joined = "\n".join(texts)
        in_str = compute_features(joined, ["in_string"], "c")["in_string"]
        out[name] = {"clamps": specs, "quotes_per_1000": 1000 * sum(w.count('"') for w in written) /
                     sum(len(w) for w in written), "in_string_fraction": float(in_str.mean()),
                     "examples": [texts[0], texts[4], texts[8]]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("kernel", help="the Linux corpus file (kernel.txt)")
    ap.add_argument("--chars", type=int, default=150_000, help="characters of the test split used (default 150000)")
    ap.add_argument("--ablate-chars", type=int, default=20_000, help="characters the ablations run on (default 20000)")
    ap.add_argument("--controls", type=int, default=100, help="random control units per ablation (default 100)")
    ap.add_argument("--length", type=int, default=300, help="characters per sample (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="the samples' seed (default 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    args = ap.parse_args(argv)
    if not have_kernel(args.kernel, "evidence_linux.py"):
        return 2
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        model = unrolled.load(args.checkpoint)
        text = read_text(args.kernel, "test", args.chars)
    except UserError as e:
        print(f"evidence_linux.py: {e}", file=sys.stderr)
        return 2
    result = {"checkpoint": args.checkpoint, "text": f"the first {len(text):,} characters of the test split",
              "chars": len(text), "probes": {}}
    for feature in ("position_in_line", "in_string", "in_comment"):
        for layer in range(model.rnn.num_layers):
            r = probe(model, text, feature, layer=layer, language="c")
            result["probes"][f"{feature}/layer{layer}"] = {k: r[k] for k in (
                "metric", "probe", "best_unit", "control", "selectivity", "fit_rows", "test_rows")}
    units = best_units(model, text)
    result["best_units"] = units
    result["ablations"] = ablations(model, text[:args.ablate_chars], units, args.controls)
    result["samples"] = clamped_samples(model, units["in_string"], args.length, args.seed)
    result["seconds"] = time.perf_counter() - t0
    _summary(result)
    out = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(out + "\n")
    else:
        print(out)
    return 0


def _summary(r: dict) -> None:
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    for k, v in r["probes"].items():
        p(f"probe {k:<26} {v['metric']} {v['probe']:.4f}  best unit {v['best_unit']['unit']} "
          f"{v['best_unit']['score']:.4f}  control {v['control']:.4f}  selectivity {v['selectivity']:+.4f}")
    for k, v in r["ablations"].items():
        p(f"ablate {k:<20} {v['unit']} at {v['value']:+.3f}: delta {v['delta_bpc']:+.4f} bits/char "
          f"(inside {v['delta_inside']:+.4f}), percentile {v['percentile']:.1f} (inside {v['percentile_inside']:.1f})")
    for k, v in r["samples"].items():
        p(f"samples {k:<13} quotes per 1000 chars {v['quotes_per_1000']:.1f}, in a string {v['in_string_fraction']:.3f}")
    p(f"{r['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
