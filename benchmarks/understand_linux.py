"""The measurements behind docs/understanding.md, on the Linux corpus's test split (the last 10%,
never trained on).

    python benchmarks/understand_linux.py ngram  ../shared/data/linux/kernel.txt OUT
    python benchmarks/understand_linux.py model  ../shared/data/linux/kernel.txt OUT models/linux-lstm-2x128

`ngram` fits Kneser-Ney models of orders 1..20 on the train split (first 80%) and saves the
test log-probabilities (OUT/ngram_logp.npy) with a JSON table of bits per character.
`model` scores the checkpoint on the same test characters, compares it with the n-grams (the
paper's table), runs the error analysis against the 20-gram, and prints JSON. The cell search,
saturation plot and speed run are the `unrolled cells` / `unrolled saturation` commands
themselves (their lines are in docs/understanding.md).
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from unrolled.errors import UserError
from linux_corpus import have_kernel


def splits(path):
    from unrolled.charlm.text import read_file, split_bounds
    text = read_file(Path(path))
    a, b = split_bounds(len(text))
    return text[:a], text[b:]


def ngram(corpus, out):
    from unrolled.understand.ngram import bits_per_char, log_probs
    train, test = splits(corpus)
    chars = sorted(set(train) | set(test))
    index = {c: i for i, c in enumerate(chars)}
    ids = lambda s: np.fromiter((index[c] for c in s), dtype=np.int64, count=len(s))  # noqa: E731
    t = time.perf_counter()
    lp = log_probs(ids(train), ids(test), 20, len(chars))  # (20, M)
    seconds = time.perf_counter() - t
    np.save(Path(out) / "ngram_logp.npy", lp.astype(np.float32))
    bpc = bits_per_char(lp[:, 1:])
    table = {"train_chars": len(train), "test_chars": len(test), "vocab": len(chars), "seconds": seconds,
             "orders": {n: {"bits_per_char": float(bpc[n - 1]), "nats_per_char": float(bpc[n - 1] * math.log(2))}
                        for n in range(1, 21)}}
    (Path(out) / "ngram.json").write_text(json.dumps(table, indent=1))
    print(json.dumps(table, indent=1))


def model(corpus, out, checkpoint):
    import torch
    from unrolled.charlm.run import load
    from unrolled.understand.ngram import error_analysis
    from unrolled.understand.record import record
    torch.set_num_threads(1)
    _, test = splits(corpus)
    lp = np.load(Path(out) / "ngram_logp.npy")  # (20, M)
    m = load(checkpoint)
    t = time.perf_counter()
    rec = record(m, test, keys=("h",), positions=[], probs=False, warmup=256)
    seconds = time.perf_counter() - t
    p_model = np.concatenate([[np.nan], np.exp(rec.logp_next[:-1])])
    nats = float(-np.log(p_model[1:]).mean())
    result = {"model_nats_per_char": nats, "model_bits_per_char": nats / math.log(2), "record_seconds": seconds,
              "ngram20_nats_per_char": float(-lp[19, 1:].mean()),
              "errors_vs_20gram": error_analysis(test, p_model, np.exp(lp[19].astype(np.float64)), language="c")}
    (Path(out) / "model.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def main(argv: list[str]) -> int:
    if not (len(argv) == 3 and argv[0] == "ngram" or len(argv) == 4 and argv[0] == "model"):
        print("usage: python benchmarks/understand_linux.py ngram KERNEL_TXT OUT\n"
              "       python benchmarks/understand_linux.py model KERNEL_TXT OUT CHECKPOINT", file=sys.stderr)
        return 2
    what, corpus, out = argv[:3]
    if not have_kernel(corpus, "understand_linux.py"):
        return 2
    if what == "model" and not (Path(out) / "ngram_logp.npy").is_file():
        print(f"understand_linux.py: {Path(out) / 'ngram_logp.npy'} is not there; run "
              f"`python benchmarks/understand_linux.py ngram {corpus} {out}` first.", file=sys.stderr)
        return 2
    Path(out).mkdir(parents=True, exist_ok=True)
    try:
        ngram(corpus, out) if what == "ngram" else model(corpus, out, argv[3])
    except UserError as e:
        print(f"understand_linux.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
