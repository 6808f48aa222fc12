"""What `path="auto"` picks: our sequence kernels where they measured ahead of torch's fused path.

    auto = kernel   if (cell, device, dtype, loops, threads) is a row of KERNEL_WINS, threads being
                    torch.get_num_threads() now, and the layer's hidden size, the batch and the
                    sequence length fall in that row's ranges (and, for a training-only row, a
                    backward is to come)
           fast     otherwise (torch's fused functions: oneDNN's LSTM cell on a CPU, cuDNN on CUDA)

So a thread count, a dtype or a device with no row never runs our kernels: where nothing was
measured, or where ours lost, the default is torch's own code, which ties torch.nn (1.00x).

How it was measured: `unrolled bench --threads 1,2 --only train` times one update of a character
model (forward, cross-entropy, backward, clipping, an Adam step) at the shapes (H, L, B, T) it
lists, with `unrolled:fast` and `unrolled:kernel` forcing each path, every contender interleaved
with the others and the median of the repeats kept, at each thread count of --threads in one
process. The rows below came from such runs on the 2-core machine of docs/performance.md (which
has the tables and the profiles behind them), in float32, with the compiled step loops loaded
(`native`) and with UNROLLED_NATIVE=0 (`python`, measured at one thread only). To re-measure on
another machine: run `unrolled bench --threads 1,N --only train` (N its thread count) and give a
row to each (cell, threads) whose `kernel` column beats `fast` at the shapes it covers; a row
changes here only when a run shows the other path ahead.
"""
from __future__ import annotations

import torch
from torch import Tensor

from unrolled.kernels import native

ANY = (1, None)  # a range with no upper end

# (cell, device type, dtype, loops, threads) -> the ranges of hidden size and batch (lo, hi),
# inclusive, hi None for no limit, the smallest sequence length our kernel wins at, and whether
# only when training (a backward to come). `loops` is "native" when the compiled step loops
# (kernels.native) are loaded, else "python".
#
# Measured 2026-12-01 10:39 UTC by `unrolled bench --threads 1,2 --only train --quick` on the
# 2-core Intel Xeon of docs/performance.md (load 0.50 at the start), with the step loops parallel
# over batch rows (a second run at 10:50 confirmed every row; docs/performance.md has its table);
# speedup of our kernel over torch.nn at (128x1 b32 t100, 256x2 b64 t100, 512x3 b32 t50):
#   1 thread:  RNN 1.34x 1.19x 1.21x   GRU 1.49x 1.19x 1.17x   LSTM 0.87x 1.03x 0.97x
#   2 threads: RNN 1.47x 1.29x 1.31x   GRU 1.72x 1.30x 1.38x   LSTM 0.74x 1.09x 0.98x
# (fused, torch's own code: 0.99x-1.04x everywhere). On a CPU torch.nn.RNN and GRU have no fused
# kernel (a per-step autograd graph, weight gradients step by step), so ours win at every shape;
# torch.nn.LSTM runs oneDNN's fused cell, and ours won only training at H = 256 (lost at 128 and
# at 512), so the LSTM takes ours for training windows with 256 <= H < 512. Before the step loops
# were parallel ours lost at 2 threads (LSTM 0.80x and 0.76x, GRU 0.84x at 256x2). An
# earlier one-thread run on a 2-core AMD EPYC gave the GRU's forward alone a tie at batch 1 (so
# batches from 8), and the Python loops (UNROLLED_NATIVE=0, one thread only) a win for the RNN
# everywhere and for the GRU only when training at H = 512.
# No row for more threads than were measured, for float64 or half precision (not measured), or
# for CUDA (cuDNN stays). One step at a time (sampling) goes through `kernels.RecurrentStep`
# (CharLM.stepper), not here.
_LSTM = {"hidden": (256, 511), "batch": (8, None), "steps": 16, "training_only": True}
KERNEL_WINS = {
    ("rnn", "cpu", "float32", "native", 1): {"hidden": ANY, "batch": ANY, "steps": 16, "training_only": False},
    ("gru", "cpu", "float32", "native", 1): {"hidden": ANY, "batch": (8, None), "steps": 16, "training_only": False},
    ("lstm", "cpu", "float32", "native", 1): _LSTM,
    ("rnn", "cpu", "float32", "native", 2): {"hidden": ANY, "batch": ANY, "steps": 16, "training_only": False},
    ("gru", "cpu", "float32", "native", 2): {"hidden": ANY, "batch": (8, None), "steps": 16, "training_only": False},
    ("lstm", "cpu", "float32", "native", 2): _LSTM,
    ("rnn", "cpu", "float32", "python", 1): {"hidden": ANY, "batch": (8, None), "steps": 16, "training_only": False},
    ("gru", "cpu", "float32", "python", 1): {"hidden": (512, None), "batch": (8, None), "steps": 16,
                                             "training_only": True},
}


def _within(value: int, bounds) -> bool:
    lo, hi = bounds
    return value >= lo and (hi is None or value <= hi)


def rule_for(kind: str, x: Tensor, threads: int | None = None):
    """The KERNEL_WINS row for a `kind` layer over x at `threads` (torch's count when None), or None."""
    if not any(key[:3] == (kind, x.device.type, str(x.dtype).removeprefix("torch.")) for key in KERNEL_WINS):
        return None  # (so the compiled loops are never built for a cell that never uses them)
    loops = "native" if native.ops_for(x) is not None else "python"
    threads = torch.get_num_threads() if threads is None else threads
    return KERNEL_WINS.get((kind, x.device.type, str(x.dtype).removeprefix("torch."), loops, threads))


def prefers_kernel(layer, x: Tensor) -> bool:
    """Whether path="auto" runs `layer` over x (B, T, D) on our kernels: only where the benchmark
    shows a win at this shape, dtype, device and thread count."""
    rule = rule_for(layer.kind, x)
    if rule is None or not _within(layer.hidden_size, rule["hidden"]) or not _within(x.shape[0], rule["batch"]) \
            or x.shape[1] < rule["steps"]:
        return False
    if rule["training_only"]:
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    return True
