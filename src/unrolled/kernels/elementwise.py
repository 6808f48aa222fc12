"""The element-wise math of the Python loops: tanh as 2 sigmoid(2x) - 1, and cached constants.

    tanh(x) = 2 sigmoid(2x) - 1

Why: on the CPU build we measured, torch.tanh on float32 is 6 to 30 times slower than
torch.sigmoid (`unrolled bench` reports both as "elementwise"), and tanh runs at every step of
every cell. Four cheap in-place ops beat one slow one; absolute error stays at float rounding
(tests/test_kernels.py compares in float64 at 1e-12). The compiled loops (csrc/steps.cpp) compute
both from their own vectorised exponential instead.
"""
from __future__ import annotations

import torch
from torch import Tensor

_CONSTANTS: dict = {}


def constant(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor holding value, cached per dtype and device: an op with a Python number
    wraps and converts it on every call, which measured slower than the op itself at step sizes."""
    key = (value, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


def tanh_(x: Tensor) -> Tensor:
    """tanh in place as 2 sigmoid(2x) - 1, the same function (exactly, up to rounding)."""
    two, one = constant(2.0, x), constant(1.0, x)
    return x.mul_(two).sigmoid_().mul_(two).sub_(one)


def tanh_into(x: Tensor, out: Tensor) -> Tensor:
    """out = tanh(x), as `tanh_`, without touching x."""
    two, one = constant(2.0, x), constant(1.0, x)
    return torch.mul(x, two, out=out).sigmoid_().mul_(two).sub_(one)
