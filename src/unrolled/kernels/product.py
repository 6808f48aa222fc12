"""The matrix products of the sequence kernels: before the loop, at each step, after the loop.

    A = X W_ih^T + b                              X (T*B, D) -> A (T*B, G*H)    (input_projection)
    P_t = A_t + h_{t-1} W_hh^T                    one step's product            (Product)
    dW_hh = dG^T H_prev,  dW_ih = dG^T X,  db = sum of dG,  dX = dG W_ih       (weight_grads)

with dG (T*B, G*H) the gradients of every step's gate pre-activations. The products over the whole
sequence are ONE matrix product each, so the loop over time is left with only what cannot wait.
`Product` picks the engine (oneDNN with W packed once, or MKL's addmm) by what measured faster.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _has_onednn() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _has_onednn()


class Product:
    """y = x W^T + bias (+ other), for a weight W (N, K) that many products reuse.

    float32 on a CPU: W is packed once for oneDNN's GEMM when it pays, else addmm (MKL's sgemm),
    as measured on an AMD EPYC (the machine of docs/performance.md), packing included:
    - products over a whole sequence (`rows` >= PACK_ROWS: the input projection, dX) when W has
      2^16 elements or more, or its rows are 128 wide or more (K, the sum's length): there
      oneDNN with a fused bias ran 5-60% faster than F.linear (which first copies the bias into
      every row of the output); narrower, smaller products (an input of 64 into 128 to 512)
      ran as fast or faster on F.linear, and packing costs about 0.1 ms;
    - one step's product (`rows` = the batch) when W has PACK_MIN elements or more, where it
      measured 10-40% faster for the LSTM and GRU at H >= 256, and slower for smaller W (its
      per-call cost).
    float64, CUDA and builds without oneDNN use addmm.
    """

    PACK_MIN = 1 << 17  # elements of W: 3H x H at H = 256 packs, 4H x H at H = 128 does not
    PACK_ROWS = 1024  # rows of x from which a sequence-sized W packs

    def __init__(self, w: Tensor, rows: int):
        self.w = w.detach()
        self.packed = None
        if _ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32 and (
                w.numel() >= self.PACK_MIN
                or rows >= self.PACK_ROWS and (w.numel() >= 1 << 16 or w.shape[1] >= 128)):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.w.contiguous(), rows)

    def __call__(self, x: Tensor, other: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        if self.packed is not None:
            if other is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.packed, bias, "add")
        if other is None:
            return F.linear(x, self.w, bias)
        return torch.addmm(other if bias is None else other + bias, x, self.w.t())


def input_projection(x: Tensor, w_ih: Tensor, b: Tensor | None) -> Tensor:
    """A = X W_ih^T + b for every step at once: x (T, B, D) -> (T, B, G*H)."""
    T, B, D = x.shape
    x2 = x.reshape(T * B, D)  # (T*B, D)
    a = Product(w_ih, T * B)(x2, bias=b)  # (T*B, G*H)
    return a.view(T, B, -1)


def weight_grads(ctx, need, dG: Tensor, dG_hh: Tensor, x: Tensor, h_prev: Tensor, sums=None):
    """The gradients of all steps at once: one matrix product per weight.

    need: which of (dx, dW_ih, dW_hh, db_ih, db_hh) are wanted. dG (T, B, G*H) is the gradient
    at the input projection's pre-activations, dG_hh (T, B, G*H) the same for the recurrent
    product (the same tensor except in the GRU's candidate), x (T, B, D) the layer's input and
    h_prev (T, B, H) the state each step read, or (h0, the outputs but the last). sums: the
    bias gradients (sum dG, sum dG_hh) when the compiled backward loop added them up already.
    """
    T, B, GH = dG.shape
    dG2 = dG.reshape(T * B, GH)  # (T*B, G*H)
    dGh2 = dG_hh.reshape(T * B, GH)  # (T*B, G*H)
    dx = Product(ctx.w_ih.t(), T * B)(dG2).view(T, B, -1) if need[0] else None  # (T, B, D)
    dw_ih = dG2.t() @ x.reshape(T * B, -1) if need[1] else None  # (G*H, D)
    dw_hh = None
    if need[2] and isinstance(h_prev, tuple):  # (h0 (B, H), h_1 .. h_{T-1} (T-1, B, H)), not joined
        h0, rest = h_prev
        dw_hh = dG_hh[0].t() @ h0  # (G*H, H)
        if T > 1:
            dw_hh.addmm_(dG_hh[1:].reshape((T - 1) * B, GH).t(), rest.reshape((T - 1) * B, -1))
    elif need[2]:
        dw_hh = dGh2.t() @ h_prev.reshape(T * B, -1)  # (G*H, H)
    if sums is not None and ctx.has_bias:
        # a copy, never the same tensor: two .grad sharing storage would be clipped twice
        db_ih = sums[0] if need[3] else None
        db_hh = (sums[1].clone() if sums[1] is sums[0] else sums[1]) if need[4] else None
        return dx, dw_ih, dw_hh, db_ih, db_hh
    db_ih = dG2.sum(0) if ctx.has_bias and need[3] else None  # (G*H,)
    db_hh = None
    if ctx.has_bias and need[4]:
        db_hh = db_ih.clone() if (dG_hh is dG and db_ih is not None) else dGh2.sum(0)  # (G*H,)
    return dx, dw_ih, dw_hh, db_ih, db_hh
