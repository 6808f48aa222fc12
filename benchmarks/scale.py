"""Past one machine's memory, and past one process: prepare and train on a corpus of >= 2 GB,
and measure throughput with 1 and 2 DDP processes.

    python benchmarks/scale.py --work /tmp/unrolled-scale            # full: a 2 GB corpus
    python benchmarks/scale.py --work /tmp/unrolled-scale --gb 0.2   # quicker

What it does, printing one JSON object at the end:
1) builds a corpus of at least --gb gigabytes by concatenating the shared corpora
   (../shared/data/shakespeare/works.txt and ../shared/data/linux/kernel.txt) again and again,
   and a small one (the two files once) to compare against;
2) `unrolled prepare` on each, in its own process: wall time and peak resident memory;
3) `unrolled train DIR` on each prepared corpus for a fixed number of steps: peak resident memory
   (it must not depend on the corpus size);
4) `torchrun --nproc_per_node=N -m unrolled train` for N = 1 and 2 on the small corpus, one thread
   per process: characters per second of the whole run (from metrics.jsonl).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SOURCES = [SHARED / "shakespeare" / "works.txt", SHARED / "linux" / "kernel.txt"]

# Runs a command and prints its peak resident memory (the largest child's, in KiB) on stderr's last line.
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(r.returncode)")


def measured(cmd: list[str], env: dict | None = None) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    peak = int(r.stderr.strip().splitlines()[-1].split()[1])
    return {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(peak / 1024, 1)}


def build_corpus(path: Path, min_bytes: int) -> int:
    data = [p.read_bytes() for p in SOURCES]
    n = 0
    with open(path, "wb") as f:
        while n < min_bytes:
            for d in data:
                f.write(d)
                n += len(d)
    return n


def train_cmd(corpus: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "unrolled", "train", str(corpus), "--out", str(out), "--max-steps", str(steps),
            "--hidden-size", "128", "--num-layers", "1", "--batch-size", "32", "--seq-len", "64",
            "--val-fraction", "0.0001", "--test-fraction", "0.0001", "--eval-every", "100000",
            "--eval-max-chars", "20000", "--quiet", "--device", "cpu"]


def chars_per_sec(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["chars_per_sec"] for r in rows if r.get("split") == "train" and "chars_per_sec" in r][1:]
    return round(sum(rates) / len(rates)) if rates else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="a scratch folder with room for the corpus (about 3x --gb)")
    ap.add_argument("--gb", type=float, default=2.0, help="size of the large corpus in gigabytes (default 2)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    args = ap.parse_args()
    missing = [str(p) for p in SOURCES if not p.exists()]
    if missing:
        raise SystemExit(f"the shared corpora are missing ({', '.join(missing)}); run from the repository")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    one_thread = {"OMP_NUM_THREADS": "1"}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "corpora": {}}
    for name, size in (("small", 1), ("large", int(args.gb * 1e9))):
        text = work / f"{name}.txt"
        n = build_corpus(text, size)
        prep = measured([sys.executable, "-m", "unrolled", "prepare", str(text), "--out", str(work / f"{name}.prep")])
        train = measured(train_cmd(work / f"{name}.prep", work / f"{name}.run", args.steps), one_thread)
        result["corpora"][name] = {"bytes": n, "prepare": prep, "train": train}
        text.unlink()  # keep the disk use down: the prepared token file is all training needs
    result["ddp"] = {}
    for procs in (1, 2):
        out = work / f"ddp{procs}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
               f"--nproc_per_node={procs}", "-m", "unrolled", *train_cmd(work / "small.prep", out, args.steps)[3:]]
        # each process gets batch 32: the effective batch grows with the processes (weak scaling)
        r = measured(cmd, one_thread)
        result["ddp"][f"{procs}"] = {**r, "chars_per_sec": chars_per_sec(out), "effective_batch": 32 * procs}
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
