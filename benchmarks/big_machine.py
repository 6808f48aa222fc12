"""What a 2-core CPU machine cannot measure, in one run of a few minutes: the CPU kernels at 4, 8
and 16 threads, and the CUDA path (cuDNN or ours, whichever `auto` picks) against torch.nn.

    python benchmarks/big_machine.py --out DIR                  # every part this machine can run
    python benchmarks/big_machine.py --out DIR --parts cpu cuda  # some of them

Each part is one process, run in turn with its own time limit, so one that fails or runs long
costs only itself; a part the machine cannot run (CUDA parts without a GPU, thread counts above
the machine's cores) is skipped and said so. The parts:

    cpu          unrolled bench --quick --only train --device cpu --threads 4,8,16 (capped at the cores)
    cuda         unrolled bench --quick --only train sample --device cuda
    cuda-bf16    unrolled bench --quick --only train --device cuda --bf16
    minimal-cuda benchmarks/minimal.py on CUDA: MinGRU and MinLSTM (the log-space scan) beside the LSTM (cuDNN)
    minimal-cpu  benchmarks/minimal.py at the largest thread count of `cpu`

Writes three files into DIR, whatever happens to the parts: result.json (every part's JSON, or
why it has none), summary.md (the Markdown tables docs/performance.md takes, with the machine and
the command of each part) and big_machine.log (every part's stderr, in order).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("unrolled") is None:  # run from a checkout that was not installed
    sys.path.insert(0, str(HERE.parent / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")]))
PARTS = ("cpu", "cuda", "cuda-bf16", "minimal-cuda", "minimal-cpu")
QUICK_MINIMAL = ["--repeats", "3", "--target-s", "0.3"]


def thread_counts(asked: list[int], cores: int) -> list[int]:
    """The asked thread counts that the machine has cores for, in order (at least its core count
    when none fit, so a smaller machine still measures its own)."""
    fit = [n for n in asked if n <= cores]
    return fit or [cores]


def commands(parts: list[str], threads: list[int], cuda: bool) -> dict[str, list[str] | str]:
    """part -> its command, or the sentence saying why it is skipped."""
    unrolled = [sys.executable, "-m", "unrolled", "bench", "--quick", "--json"]
    minimal = [sys.executable, str(HERE / "minimal.py"), *QUICK_MINIMAL]
    no_gpu = "skipped: this torch sees no CUDA device"
    table = {
        "cpu": unrolled + ["--only", "train", "--device", "cpu", "--threads", ",".join(map(str, threads))],
        "cuda": unrolled + ["--only", "train", "sample", "--device", "cuda"] if cuda else no_gpu,
        "cuda-bf16": unrolled + ["--only", "train", "--device", "cuda", "--bf16"] if cuda else no_gpu,
        "minimal-cuda": minimal + ["--device", "cuda"] if cuda else no_gpu,
        "minimal-cpu": minimal + ["--device", "cpu", "--threads", str(max(threads))],
    }
    return {p: table[p] for p in parts}


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def run_part(name: str, cmd: list[str], limit: float, log) -> dict:
    print(f"big_machine.py: {name}: running (at most {limit:.0f} s): {shown(cmd)}", file=sys.stderr, flush=True)
    log.write(f"\n===== {name}: {' '.join(cmd)}\n")
    log.flush()
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"command": cmd, "seconds": round(time.perf_counter() - t0, 1), "error": f"stopped after {limit:.0f} s"}
    seconds = round(time.perf_counter() - t0, 1)
    if done.returncode != 0:
        return {"command": cmd, "seconds": seconds, "error": f"exit status {done.returncode}: see big_machine.log"}
    try:
        return {"command": cmd, "seconds": seconds, "result": json.loads(done.stdout)}
    except json.JSONDecodeError:
        return {"command": cmd, "seconds": seconds, "error": "its output was not JSON: see big_machine.log",
                "stdout": done.stdout[-2000:]}


def shown(cmd: list[str]) -> str:
    """A part's command as a reader runs it from the repository's root."""
    return " ".join(["python"] + [str(Path(a).relative_to(HERE.parent)) if a.startswith(str(HERE)) else a
                                  for a in cmd[1:]])


def summary(result: dict) -> str:
    """The Markdown report: the machine, then each part's tables (or why it has none)."""
    import minimal
    from unrolled import bench

    m = result["machine"]
    lines = [f"# benchmarks/big_machine.py, {result['started']}", "",
             f"Machine: {m.get('cpu')} with {m.get('cores')} cores" + (f", {m['gpu']} (CUDA {m['cuda_version']}, "
                                                                        f"cuDNN {m['cudnn']})" if m.get("cuda") else
                                                                        ", no GPU")
             + f"; Python {m['python']}, torch {m['torch']}.", ""]
    for name, part in result["parts"].items():
        lines.append(f"## {name}")
        lines.append("")
        if "skipped" in part:
            lines += [part["skipped"], ""]
            continue
        lines += [f"`{shown(part['command'])}` ({part['seconds']:.0f} s)", ""]
        if "error" in part:
            lines += [f"No result: {part['error']}.", ""]
        elif name.startswith("minimal"):
            lines += [minimal.table(part["result"]), ""]
        else:
            lines += [bench.table(part["result"]), ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for result.json, summary.md and big_machine.log")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts (default: all)")
    ap.add_argument("--threads", default="4,8,16", help="CPU thread counts of the cpu part (default 4,8,16)")
    ap.add_argument("--part-limit", type=float, default=180.0, help="seconds each part may run (default 180)")
    ap.add_argument("--budget", type=float, default=480.0,
                    help="seconds for the whole run: a part is not started once less than --part-limit is left, "
                         "and none runs past it (default 480)")
    args = ap.parse_args(argv)
    from unrolled.bench.settings import thread_list
    from unrolled.errors import UserError

    try:
        asked = list(thread_list(args.threads))
    except UserError as e:
        print(f"big_machine.py: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"big_machine.py: --out {out}: its folder {out.parent} does not exist; create it or pick another",
              file=sys.stderr)
        return 2
    out.mkdir(exist_ok=True)
    threads = thread_counts(asked, os.cpu_count() or 1)
    result = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "parts": {}}
    t0 = time.perf_counter()
    with open(out / "big_machine.log", "w", encoding="utf-8") as log:
        for name, cmd in commands(args.parts, threads, result["machine"]["cuda"]).items():
            left = args.budget - (time.perf_counter() - t0)
            if not isinstance(cmd, str) and left < min(args.part_limit, 30.0):
                cmd = f"skipped: {left:.0f} s of the --budget of {args.budget:.0f} s were left"
            if isinstance(cmd, str):
                print(f"big_machine.py: {name}: {cmd}", file=sys.stderr)
                result["parts"][name] = {"skipped": cmd}
            else:
                result["parts"][name] = run_part(name, cmd, min(args.part_limit, left), log)
                part = result["parts"][name]
                print(f"big_machine.py: {name}: {part.get('error', 'done')} ({part['seconds']:.0f} s)", file=sys.stderr)
            # written after every part, so a run cut short keeps what it measured
            (out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
            (out / "summary.md").write_text(summary(result), encoding="utf-8")
    print(f"big_machine.py: wrote {out / 'result.json'}, {out / 'summary.md'} and {out / 'big_machine.log'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
