"""The thread default of `unrolled train`: characters per second at 1 thread, at the machine's
cores, and at the automatic default, on a quiet machine and with one core held by another job.

    python benchmarks/threads.py [--steps 60] [--repeats 3] > threads.json

Each point is a real `unrolled train` process (a 2 x 256 LSTM, the defaults when the table in
docs/performance.md was measured, on the default corpus,
validation and test cut to 1% so the run is mostly training), and its speed is the median of
the chars/s rows it logs after the first (warm-up) row. The three thread settings are
interleaved within each repeat; the busy case starts one `while True: pass` process first, as
another job on the machine would be.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(threads: str, steps: int, folder: Path) -> dict:
    run = folder / f"run-{threads}-{time.monotonic_ns()}"
    flags = ["--hidden-size", "256", "--num-layers", "2", "--max-steps", str(steps), "--eval-every", "1000000",
             "--val-fraction", "0.01", "--test-fraction", "0.01", "--out", str(run), "--device", "cpu", "--quiet"]
    if threads != "auto":
        flags += ["--threads", threads]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-m", "unrolled", "train", *flags], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"unrolled train failed: {out.stderr.strip()[-500:]}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["chars_per_sec"] for r in rows if r.get("split") == "train" and "chars_per_sec" in r][1:]
    return {"threads": threads, "chars_per_sec": statistics.median(speeds)}


def chosen_threads() -> int:
    code = "import torch; from unrolled import threads; print(threads.choose(None))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="updates per run (default 60)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting and load (default 3)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = ["1", str(cores), "auto"] if cores > 1 else ["1", "auto"]
    result = {"cores": cores, "steps": args.steps, "repeats": args.repeats, "loads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for load in ("quiet", "one core busy"):
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "quiet" else None
            try:
                time.sleep(1.0)
                picked = chosen_threads()
                runs = {s: [] for s in settings}
                for _ in range(args.repeats):
                    for s in settings:
                        runs[s].append(one_run(s, args.steps, Path(tmp))["chars_per_sec"])
                        print(f"{load}: threads {s}: {runs[s][-1]:,.0f} chars/s", file=sys.stderr)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            result["loads"][load] = {"auto_picked": picked,
                                     "chars_per_sec": {s: statistics.median(v) for s, v in runs.items()},
                                     "runs": runs}
    print(json.dumps(result, indent=1))
    print("| load | " + " | ".join(f"{s} thread(s)" if s != "auto" else "default" for s in settings)
          + " | default picked |", file=sys.stderr)
    for load, r in result["loads"].items():
        print(f"| {load} | " + " | ".join(f"{r['chars_per_sec'][s]:,.0f}" for s in settings)
              + f" | {r['auto_picked']} |", file=sys.stderr)


if __name__ == "__main__":
    main()
