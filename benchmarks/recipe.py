"""The recipe ablation: which `unrolled train` settings give the best held-out bits/char for a budget.

    python benchmarks/recipe.py CORPUS --minutes 10 [--jobs 2] [--out DIR] [--only NAME ...]
    python benchmarks/recipe.py --set demo --minutes 3 --out runs/recipe-demo

Every variant changes one or two settings of a base (`SETS` below: `train`, the defaults of
`unrolled train`; `train-2x256`, the earlier defaults, a 2 x 256, which the committed Shakespeare
ablations used; `demo`, the settings `unrolled demo` trains with, on the default corpus when no
CORPUS is given) and trains for the
number of updates that variant makes in `--minutes` on one thread of this machine. Those rates
are measured first, each variant for `--rate-seconds` on one thread, `--jobs` at a time with
nothing else running (so as loaded as the runs of benchmarks/equal_time.py, two side by side), or
read back from DIR/rates.json (each with the flags it was measured with: a variant whose flags
changed is measured again), so a rerun measures them once; a run's budget is its rate times
the minutes less the 3% its validation passes take (the 2 x 256's 10-minute run on Shakespeare:
2,600 updates at 4.47 a second). The training runs, `--jobs` at a time and one thread
each, then stop at that step count, not at a wall-clock time, so other jobs on the machine slow a
run down but do not change its result (the cosine schedule follows the same steps it would have
in the minutes). Each is scored by the trainer's own end-of-run pass on the test split (best
checkpoint by validation, the batch's 32 streams, state carried; the worst stream beside it).
A run already finished in DIR is read back, not trained again.

Prints one JSON object (and writes DIR/recipe.json) and a Markdown table on stderr.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from quality_setup import not_a_corpus, write_result
from unrolled.charlm.plot import read_metrics
from unrolled.errors import UserError

# set -> (the base's `unrolled train` flags, {variant name -> flags on top of the base})
# variants of any base's optimisation
SCHEDULE = {
    "batch 16": ["--batch-size", "16"],
    "window 64": ["--seq-len", "64"],
    "lr 2e-2": ["--lr", "2e-2"],
    "lr 5e-3": ["--lr", "5e-3"],
    "cosine floor 0.01": ["--min-lr-ratio", "0.01"],
}
TRAIN = {
    "defaults": [],  # one layer of 512 since the 60-minute ablation (set train-2x256)
    "2 x 256": ["--hidden-size", "256", "--num-layers", "2"],  # the earlier defaults
    **SCHEDULE,
    "1 x 768": ["--hidden-size", "768"],
    "2 x 384": ["--hidden-size", "384", "--num-layers", "2"],
}
# the earlier defaults, a 2 x 256, as the base: the set benchmarks/recipe_shakespeare_10min*.json
# and _60min.json were measured with (their "defaults" is this 2 x 256)
TRAIN_2X256_BASE = ["--hidden-size", "256", "--num-layers", "2"]
TRAIN_2X256 = {
    "defaults": [],
    **SCHEDULE,
    "1 x 512": ["--hidden-size", "512", "--num-layers", "1"],
    "2 x 384": ["--hidden-size", "384"],
    "dropout 0.1": ["--dropout", "0.1"],
    "dropout 0.2": ["--dropout", "0.2"],
}
# what unrolled.charlm.demo.demo passes to train (kept in step with it by hand)
DEMO_BASE = ["--hidden-size", "256", "--num-layers", "1", "--embedding-size", "32", "--batch-size", "32",
             "--seq-len", "100", "--val-fraction", "0.05", "--test-fraction", "0.05", "--eval-every", "200",
             "--eval-max-chars", "100000"]
# benchmarks/recipe_demo_3min.json was measured with the demo's earlier 2 x 128 as the base
DEMO = {
    "demo": [],
    "2 x 128": ["--hidden-size", "128", "--num-layers", "2"],
    "2 x 192": ["--hidden-size", "192", "--num-layers", "2"],
    "2 x 256": ["--num-layers", "2"],
    "1 x 384": ["--hidden-size", "384"],
    "batch 16": ["--batch-size", "16"],
}
# the scan-trained cells beside the LSTM at the size benchmarks/minimal_quality.py compares them
# (its "lstm" is the same run as train-2x256's "defaults", so a DIR of that set can lend it)
MINIMAL = {"lstm": [], "mingru": ["--cell", "mingru"], "minlstm": ["--cell", "minlstm"],
           # a learning rate of their own: at the LSTM's 1e-2 both end worse at 60 minutes than at 10
           "mingru lr 3e-3": ["--cell", "mingru", "--lr", "3e-3"], "minlstm lr 3e-3": ["--cell", "minlstm", "--lr", "3e-3"]}
SETS = {"train": ([], TRAIN), "train-2x256": (TRAIN_2X256_BASE, TRAIN_2X256), "demo": (DEMO_BASE, DEMO),
        "minimal": (TRAIN_2X256_BASE, MINIMAL)}

EVAL_SHARE = 0.03  # of a run's wall-clock, its validation passes (every 500 updates, the whole split)


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("/", "-")


def train(corpus: Path | None, out: Path, flags: list[str], limit: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "unrolled", "train", *([str(corpus)] if corpus else []), "--threads", "1", "--quiet",
           "--out", str(out), *flags, *limit]  # the limit last: it wins
    with open(str(out) + ".log", "w", encoding="utf-8") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)


def rate(corpus: Path, out: Path, name: str, flags: list[str], seconds: float) -> float:
    """Updates per second of one variant on one thread, after its first logged steps."""
    run = out / "rates" / slug(name)
    shutil.rmtree(run, ignore_errors=True)  # measured with other flags, or cut short
    run.parent.mkdir(parents=True, exist_ok=True)
    train(corpus, run, flags, ["--max-minutes", str(seconds / 60), "--eval-every", "1000000",
                               "--eval-max-chars", "20000"])
    try:
        steps = [r for r in read_metrics(run) if r.get("split") == "train"]
    except UserError:
        steps = []
    if len(steps) < 3:
        raise SystemExit(f"recipe.py: the rate run of {name!r} logged too few steps; see {run}.log")
    a, b = steps[1], steps[-1]
    return (b["step"] - a["step"]) / (b["time_s"] - a["time_s"])


def known_rates(saved: dict, variants: dict) -> dict:
    """The rates of DIR/rates.json ({name: {"flags": every flag it trained with, "updates_per_s": r}})
    that still hold: an entry counts only for a variant of the same name and the same flags, so a
    DIR reused with another --set or --seed measures again what changed."""
    return {name: e["updates_per_s"] for name, e in saved.items()
            if isinstance(e, dict) and name in variants and e.get("flags") == variants[name]}


def result_of(run: Path) -> dict | None:
    if not (run / "last").exists() or not (run / "metrics.jsonl").is_file():
        return None
    metrics = read_metrics(run)
    test = [r for r in metrics if r.get("split") == "test"]
    val = [r for r in metrics if r.get("split") == "val"]
    if not test:
        return None
    return {"test_bpc": test[-1]["bpc"], "best_val_bpc": min(r["bpc"] for r in val) if val else None,
            "steps": test[-1]["step"], "worst_stream_bpc": test[-1].get("worst_stream_bpc")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="?", help="a UTF-8 text file (default: unrolled's default corpus)")
    ap.add_argument("--set", choices=list(SETS), default="train",
                    help="train: variants of `unrolled train`'s defaults; train-2x256: of the earlier defaults, "
                         "a 2 x 256; demo: of `unrolled demo`'s settings; minimal: MinGRU and MinLSTM "
                         "beside the LSTM, 2 x 256")
    ap.add_argument("--minutes", type=float, default=10.0, help="the budget the step counts stand for (default 10)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default 2)")
    ap.add_argument("--rate-seconds", type=float, default=30.0, help="length of each rate measurement (default 30)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these variants of the set")
    ap.add_argument("--out", default="runs/recipe", help="folder for every run (default runs/recipe)")
    ap.add_argument("--seed", type=int, default=None, help="every run's --seed (default: train's, 1337)")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus) if args.corpus else None
    if corpus is not None and not_a_corpus("recipe.py", corpus):
        return 2
    base, variants = SETS[args.set]
    unknown = [n for n in args.only or [] if n not in variants]
    if unknown:
        print(f"recipe.py: --only {unknown[0]!r} is not a variant of --set {args.set}; "
              f"choose from {', '.join(variants)}", file=sys.stderr)
        return 2
    seed = [] if args.seed is None else ["--seed", str(args.seed)]
    VARIANTS = {name: base + flags + seed for name, flags in variants.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(VARIANTS)
    rates_file = out / "rates.json"
    saved = json.loads(rates_file.read_text()) if rates_file.is_file() else {}
    rates = known_rates(saved, VARIANTS)
    todo = [name for name in names if name not in rates]
    if todo:
        print(f"recipe.py: measuring the update rates of {len(todo)} variants, {args.rate_seconds:.0f} s each, "
              f"{args.jobs} at a time", file=sys.stderr)
        with ThreadPoolExecutor(args.jobs) as pool:
            got = pool.map(lambda name: rate(corpus, out, name, VARIANTS[name], args.rate_seconds), todo)
            rates.update(zip(todo, got))
        saved.update({name: {"flags": VARIANTS[name], "updates_per_s": rates[name]} for name in todo})
        rates_file.write_text(json.dumps(saved, indent=1) + "\n")
    steps = {name: int(rates[name] * 60 * args.minutes * (1 - EVAL_SHARE)) for name in names}

    def one(name: str) -> None:
        run = out / slug(name)
        if result_of(run) is None:
            print(f"recipe.py: training {name!r} for {steps[name]} updates", file=sys.stderr)
            train(corpus, run, VARIANTS[name], ["--max-steps", str(steps[name])])

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, names))
    table = {}
    for name in names:
        r = result_of(out / slug(name))
        table[name] = {"flags": variants[name], "updates_per_s": rates[name], "steps": steps[name], **(r or {})}
    result = {"corpus": corpus.name if corpus else "(the default corpus)", "set": args.set, "base": base,
              "seed": args.seed, "minutes": args.minutes, "variants": table}
    write_result(result, str(out / "recipe.json"))
    print("| variant | flags | updates | test bits/char |\n| --- | --- | ---: | ---: |", file=sys.stderr)
    for name, r in table.items():
        bpc = f"{r['test_bpc']:.3f}" if "test_bpc" in r else "(failed: see its log)"
        print(f"| {name} | `{' '.join(r['flags']) or '(none)'}` | {r['steps']:,} | {bpc} |", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
