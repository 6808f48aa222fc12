"""Held-out bits per character at equal wall-clock: MinGRU and MinLSTM beside the LSTM.

For each budget (default 10 and 60 minutes) and corpus (Shakespeare, the Linux kernel, split by
position 80/10/10), every cell trains a model of the same width and depth with `unrolled.train`
and its defaults (Adam at 1e-2, cosine from a 20-step warmup, clipping at 1, truncated BPTT
with the state carried), only the cell, the size, the budget and the seed set; then each is
scored on the test split by the trainer's own evaluation (its best checkpoint, the state carried
through the text). The cells run one after another, the order rotated from one corpus and budget
to the next, so a busy machine does not always slow the same one.

    python benchmarks/minimal_quality.py --minutes 10 60 --out benchmarks/minimal_quality.json
    python benchmarks/minimal_quality.py --minutes 10 --corpora shakespeare --threads 1

Prints one JSON object (on stdout; --out FILE also writes it there, replacing FILE only once
something was measured) and a Markdown table (on stderr). The corpora are not shipped with the
project: without them under --data it measures nothing, says what is missing and exits with 2
(docs/topologies.md#results and models/linux-lstm-2x128/README.md say how to make them).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import unrolled
from quality_setup import CORPORA, add_run_arguments, start, write_result

CELLS = ("lstm", "mingru", "minlstm")


def train_one(cell: str, path: Path, minutes: float, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="minimal-quality-"))
    t0 = time.perf_counter()
    try:
        r = unrolled.train(paths=[str(path)], out=str(tmp / "run"), cell=cell, hidden_size=args.hidden_size,
                           num_layers=args.num_layers, embedding_size=args.embedding_size,
                           batch_size=args.batch_size, seq_len=args.seq_len, max_minutes=minutes,
                           seed=args.seed, progress=False, device="cpu")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"test_bpc": r.metrics["test_bpc"], "best_val_bpc": r.metrics.get("best_val_bpc"), "steps": r.step,
            "train_minutes": r.metrics["minutes"], "seconds_total": time.perf_counter() - t0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap)
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--minutes", nargs="+", type=float, default=[10.0, 60.0],
                    help="training budgets per cell per corpus (default 10 60)")
    args = ap.parse_args(argv)
    started = start(args, "minimal_quality")
    if started is None:
        return {}
    data, result = started
    result["runs"] = []
    turn = 0
    for minutes in args.minutes:
        for corpus in args.corpora:
            order = args.cells[turn % len(args.cells):] + args.cells[:turn % len(args.cells)]
            turn += 1
            for cell in order:
                row = {"minutes": minutes, "corpus": corpus, "cell": cell,
                       **train_one(cell, data / CORPORA[corpus], minutes, args)}
                result["runs"].append(row)
                print(f"{minutes:g} min {corpus:12s} {cell:8s} test {row['test_bpc']:.4f} bits/char after "
                      f"{row['steps']} steps", file=sys.stderr, flush=True)
    write_result(result, args.out)
    print("\n| budget | corpus | " + " | ".join(f"{c} test bits/char (updates)" for c in args.cells) + " |",
          file=sys.stderr)
    print("| --- | --- |" + " ---: |" * len(args.cells), file=sys.stderr)
    for minutes in args.minutes:
        for corpus in args.corpora:
            got = {r["cell"]: r for r in result["runs"] if r["minutes"] == minutes and r["corpus"] == corpus}
            print(f"| {minutes:g} min | {corpus} | " + " | ".join(
                f"{got[c]['test_bpc']:.3f} ({got[c]['steps']:,})" for c in args.cells) + " |", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 2)
