"""The minimal cells' recurrence compiled (`csrc/minimal.cpp`): what `unrolled.minimal`'s "loop"
path runs where the step kernels load.

One layer of a MinGRU or MinLSTM is h_t = a_t h_{t-1} + b_t with a_t, b_t functions of the
pre-activations alone (minGRU: a = 1 - z, b = z n; minLSTM: a = f', b = (1 - f') g), so the
layer's matrix product for every step runs before the loop (in `unrolled.minimal`) and the loop
is element-wise: forward, one pass over the pre-activations writing h; backward, one reverse
pass writing the pre-activations' gradients, the gates recomputed from the pre-activations (it
saves pre, h0 and the output, not the gates). Without the library `unrolled.minimal` runs its
torch loop (`MinimalLoop`, the same arithmetic); tests/test_minimal.py checks both against the
readable loop.
"""
from __future__ import annotations

import torch
from torch import Tensor

from unrolled.kernels import native


def available(pre: Tensor) -> bool:
    """Whether the compiled recurrence runs for pre-activations `pre` (a float CPU tensor and the library loaded)."""
    ops = native.ops_for(pre)
    return ops is not None and hasattr(ops, "minimal_forward")


class MinimalSequence(torch.autograd.Function):
    """pre (B, T, G*H) the pre-activations (gate rows z, n or f, i, g), h0 (B, H), kind "mingru"
    or "minlstm" -> h (B, T, H), every step of one layer, by the compiled loop."""

    @staticmethod
    def forward(ctx, pre: Tensor, h0: Tensor, kind: str) -> Tensor:
        lstm = kind == "minlstm"
        pre, h0 = pre.contiguous(), h0.contiguous()
        out = native.ops().minimal_forward(pre, h0, lstm)
        ctx.lstm = lstm
        ctx.save_for_backward(pre, h0, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        pre, h0, out = ctx.saved_tensors
        d_pre, d_h0 = native.ops().minimal_backward(grad_out.contiguous(), pre, h0, out, ctx.lstm)
        return d_pre, d_h0, None
