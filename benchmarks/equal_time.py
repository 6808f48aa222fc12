"""unrolled's defaults against the small Transformer, the same wall-clock each, side by side.

    python benchmarks/equal_time.py CORPUS --minutes 10 [--out DIR] [-- extra unrolled train flags]

Starts two processes at once, one CPU thread each (a 2-core machine runs one per core):
`unrolled train CORPUS --max-minutes M --threads 1` (the defaults: whatever `unrolled train`
does with no other flag) and `python benchmarks/transformer.py CORPUS --minutes M --threads 1`.
Both cut the file the same way (80% train, 10% validation, 10% test, by position) and are scored
on its test split after training: unrolled by its own end-of-run test pass (the best checkpoint
by validation, the batch's 32 streams with the state carried), the Transformer with at least half a block of
context per character. Prints one JSON object (and writes DIR/equal_time.json): each contender's
updates, characters read and test bits/char.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from quality_setup import not_a_corpus

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="a UTF-8 text file")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of each (default 10)")
    ap.add_argument("--out", default="runs/equal_time", help="folder for both runs (default runs/equal_time)")
    ap.add_argument("extra", nargs="*", help="after --: more `unrolled train` flags (default: none)")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not_a_corpus("equal_time.py", corpus):
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / f"unrolled-{time.strftime('%Y%m%d-%H%M%S')}"
    lstm = subprocess.Popen([sys.executable, "-m", "unrolled", "train", str(corpus), "--max-minutes", str(args.minutes),
                             "--threads", "1", "--quiet", "--out", str(run_dir), *args.extra])
    tf_json = out / "transformer.json"
    tf = subprocess.Popen([sys.executable, str(HERE / "transformer.py"), str(corpus), "--minutes", str(args.minutes),
                           "--threads", "1", "--out", str(tf_json)], stdout=subprocess.DEVNULL)
    print(f"equal_time.py: training both for {args.minutes} minutes, then scoring the test split...", file=sys.stderr)
    codes = lstm.wait(), tf.wait()
    if any(codes):
        print(f"equal_time.py: a contender failed (exit codes {codes})", file=sys.stderr)
        return 1
    record = json.loads((run_dir / "best" / "state.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    test = [r for r in rows if r.get("split") == "test"][-1]
    train_rows = [r for r in rows if r.get("split") == "train"]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    chars_per_step = config["train"]["batch_size"] * config["train"]["seq_len"]
    steps = max(r["step"] for r in train_rows)
    result = {"corpus": corpus.name, "minutes": args.minutes, "threads": 1,
              "unrolled": {"flags": args.extra, "updates": steps, "chars_seen": steps * chars_per_step,
                           "test_bits_per_char": test["bpc"], "best_step": record.get("step")},
              "transformer": json.loads(tf_json.read_text(encoding="utf-8"))}
    text = json.dumps(result, indent=1)
    print(text)
    (out / "equal_time.json").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
