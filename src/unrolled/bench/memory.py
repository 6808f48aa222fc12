"""Peak memory of one update with full BPTT against truncated BPTT, as the sequence grows.

full:      forward over all seq steps, backward through all of them
truncated: windows of 100 steps, the state carried and detached between them, a backward per
           window (what `unrolled train` does)

Each point runs in a fresh process, so one point's allocations cannot raise the next one's
peak: peak resident memory on a CPU (Linux VmHWM, reset first), peak allocated on CUDA.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from unrolled.bench.models import make_lm
from unrolled.bench.settings import Settings
from unrolled.recurrent import detach_state
from unrolled.charlm.text import Vocabulary

_CHILD = r"""
import json, sys
from unrolled.bench.memory import memory_point
print(json.dumps(memory_point(*json.loads(sys.argv[1]))))
"""
SRC = Path(__file__).resolve().parents[2]  # the folder holding the unrolled package, for the child


def _resident_bytes() -> int:
    """The process's resident memory now (Linux /proc; else the high-water mark)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return _peak_resident_bytes()


def _reset_peak_resident() -> None:
    # Linux: writing 5 to clear_refs resets the high-water mark VmHWM, so the peak measured next
    # belongs to the update alone and not to importing torch.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_resident_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # here, not at the top: Unix only, and only where /proc is missing

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_point(mode: str, seq: int, window: int, threads: int, device_name: str) -> dict:
    """One update of a 2-layer LSTM of 256 (batch 32) over `seq` characters, in this process,
    with full or truncated BPTT -> peak memory above the state before the update, in MiB."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    vocab = Vocabulary([chr(c) for c in range(32, 127)])
    lm = make_lm("lstm", 256, 2, vocab, device)
    idx = torch.randint(0, len(vocab), (32, seq + 1), device=device)
    lm(idx[:, :8])[0].sum().backward()  # first-call allocations happen before the baseline
    lm.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _resident_bytes()
        _reset_peak_resident()
    k = seq if mode == "full" else window
    state = None
    for a in range(0, seq, k):
        logits, state = lm(idx[:, a:a + k], state)  # (B, k, V)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, a + 1:a + k + 1].reshape(-1)).backward()
        state = detach_state(state)  # the window edge: the next backward stops here
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _peak_resident_bytes() - before
    return {"mode": mode, "seq": seq, "window": window, "peak_mib": round(max(peak, 0) / 2**20, 1)}


def bench_memory(s: Settings, device, threads: int) -> list[dict]:
    """One row per sequence length: the peak MiB of full and of truncated BPTT, each in a fresh process."""
    seqs = (100, 400, 1600) if s.quick else (100, 200, 400, 800, 1600, 3200)
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    for seq in seqs:
        row = {"seq": seq}
        for mode in ("full", "truncated"):
            arg = json.dumps([mode, seq, 100, threads, str(device)])
            done = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True,
                                  text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"memory point {mode} seq={seq} failed: {done.stderr.strip()[-500:]}")
            row[mode + "_mib"] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]
        rows.append(row)
        print(f"  memory seq {seq}: full {row['full_mib']} MiB, truncated {row['truncated_mib']} MiB",
              file=sys.stderr)
    return rows
