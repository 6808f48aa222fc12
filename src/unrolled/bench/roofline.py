"""The roofline: the machine's matrix-multiply peak, measured in the run, and a model's FLOPs.

A model's matrix FLOPs per character are sum_l 2 (D_l + H) G H forward (G gates per cell, D_0
the embedding width) plus 2 H V for the head; training is 3x that, since the backward pass does
two products for each forward one. Fraction of the peak = chars/s x FLOPs/char / peak.
"""
from __future__ import annotations

import statistics

import torch

from unrolled.bench.timing import interleaved
from unrolled.cells import facts
from unrolled.kernels import Product, tanh_into


def peak_contenders(device: torch.device, k: int) -> dict:
    """k products of 1024 x 1024 matrices on each GEMM engine torch has here: torch.mm (MKL on a
    CPU, cuBLAS on CUDA) and, for float32 on a CPU, oneDNN with a packed weight, which the LSTM's
    fused cell and our kernels use and which is faster than MKL on some CPUs (AMD's)."""
    a = torch.randn(1024, 1024, device=device)
    fns = {"matmul:mm": lambda: [torch.mm(a, a) for _ in range(k)]}
    packed = Product(a, 1024)
    if packed.packed is not None:
        fns["matmul:onednn"] = lambda: [packed(a) for _ in range(k)]
    return fns


def matmul_peak(device: torch.device, repeats: int) -> dict:
    """The matrix-multiply peak of this machine, measured now: GFLOP/s of C = A B (float32) for a
    large square product and for the shapes the models do: one step (B x H)(H x 4H) and a whole
    sequence at once (B*T x H)(H x 4H). Each is the median of the repeats; the peak is the best
    of them, so the fraction of the peak a model reaches is never flattered."""
    out = {}
    for name, fn in peak_contenders(device, 2).items():  # the square product on every engine
        out["square_1024_" + name.split(":")[1]] = 2 * 1024 ** 3 * 2 / statistics.median(
            interleaved({name: fn}, repeats, device)[name]) / 1e9
    for name, (m, k, n) in {"b64_h256_4h": (64, 256, 1024),
                            "b6400_h256_4h": (6400, 256, 1024)}.items():
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        reps = max(1, int(2e9 / (2 * m * k * n)))  # about 2 GFLOP per timed call
        def run(a=a, b=b, reps=reps):
            for _ in range(reps):
                torch.mm(a, b)
        secs = statistics.median(interleaved({name: run}, repeats, device)[name])
        out[name] = 2 * m * k * n * reps / secs / 1e9
    out["peak_gflops"] = max(out.values())
    return out


def elementwise(device: torch.device, repeats: int) -> dict:
    """Nanoseconds per float32 element of the activations, over a (100, 64, 256) tensor: torch.tanh
    against torch.sigmoid and the kernels' tanh as 2 sigmoid(2x) - 1 (why they use it)."""
    x = torch.randn(100, 64, 256, device=device)
    out = torch.empty_like(x)
    fns = {"tanh": lambda: torch.tanh(x, out=out), "sigmoid": lambda: torch.sigmoid(x, out=out),
           "tanh_as_sigmoid": lambda: tanh_into(x, out)}
    times = interleaved(fns, repeats, device)
    return {f"{n}_ns_per_element": round(statistics.median(t) / x.numel() * 1e9, 3) for n, t in times.items()}


def flops_per_char(cell: str, H: int, L: int, D: int, V: int) -> dict:
    """Matrix FLOPs per character: forward sum_l 2 (D_l + H) G H + 2 H V; training 3x forward."""
    G = facts(cell).num_gates
    fwd = sum(2 * ((D if l == 0 else H) + H) * G * H for l in range(L)) + 2 * H * V
    return {"forward": fwd, "train": 3 * fwd}
