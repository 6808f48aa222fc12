"""What `path="auto"` picks: our sequence kernels where they measured ahead of torch's fused path.

    auto = kernel   if (cell, device, loops) is in KERNEL_WINS and the layer's hidden size, the
                    batch and the sequence length reach that row (and, for a training-only row,
                    a backward is to come)
           fast     otherwise (torch's fused functions: oneDNN's LSTM cell on a CPU, cuDNN on CUDA)

How it was measured: `unrolled bench` (its "train" part) times one update of a character
model (forward, cross-entropy, backward, clipping, an Adam step) at the shapes (H, L, B, T) it
lists, with `unrolled:fast` and `unrolled:kernel` forcing each path, every contender
interleaved with the others and the median of the repeats kept. The rows below
came from such runs on one thread of the 2-core AMD EPYC of docs/performance.md (which has the
results and the profiles behind them), with the compiled step loops loaded (`native`) and with
UNROLLED_NATIVE=0 (`python`). `unrolled bench` re-measures them on any machine; a row changes
here only when a run shows the other path ahead.
"""
from __future__ import annotations

import torch
from torch import Tensor

from unrolled.kernels import native

# (cell, device type, loops) -> the smallest hidden size, batch and sequence length our kernel
# wins at, and whether only when training (a backward to come). `loops` is "native" when the
# compiled step loops (kernels.native) are loaded, else "python".
#
# On a CPU, torch.nn.RNN and GRU have no fused kernel (a per-step autograd graph, weight
# gradients step by step, a float32 tanh much slower than sigmoid), so ours win: compiled, the
# RNN and GRU forward and backward at every size we measured (the GRU's forward alone from batch
# 8; at batch 1 it tied); in Python, the RNN everywhere and the GRU only for training at
# H = 512. torch.nn.LSTM runs oneDNN's fused cell: compiled, ours won training at H = 256 (1.11x),
# tied at 512 and lost at 128, and its forward alone lost at 256, so the LSTM takes ours only
# for training from H = 256. One step at a time (sampling) goes through `kernels.RecurrentStep`
# (CharLM.stepper), not here. On CUDA nothing is listed: cuDNN stays.
KERNEL_WINS = {
    ("rnn", "cpu", "native"): {"hidden": 1, "batch": 1, "steps": 16, "training_only": False},
    ("gru", "cpu", "native"): {"hidden": 1, "batch": 8, "steps": 16, "training_only": False},
    ("lstm", "cpu", "native"): {"hidden": 256, "batch": 8, "steps": 16, "training_only": True},
    ("rnn", "cpu", "python"): {"hidden": 1, "batch": 8, "steps": 16, "training_only": False},
    ("gru", "cpu", "python"): {"hidden": 512, "batch": 8, "steps": 16, "training_only": True},
}


def prefers_kernel(layer, x: Tensor) -> bool:
    """Whether path="auto" runs `layer` over x (B, T, D) on our kernels: only where the benchmark
    shows a win."""
    if not any(key[:2] == (layer.kind, x.device.type) for key in KERNEL_WINS):
        return False  # (so the compiled loops are never built for a cell that never uses them)
    loops = "native" if native.ops_for(x) is not None else "python"
    rule = KERNEL_WINS.get((layer.kind, x.device.type, loops))
    if rule is None or layer.hidden_size < rule["hidden"] or x.shape[0] < rule["batch"] \
            or x.shape[1] < rule["steps"]:
        return False
    if rule["training_only"]:
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    return True
