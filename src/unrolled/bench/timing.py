"""Timing contenders fairly: interleaved, rotated, the device synchronised around each region."""
from __future__ import annotations

import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, repeats: int, device: torch.device, target_s: float = 0.0) -> dict[str, list[float]]:
    """Run every fn once per repeat, the order rotated each repeat; -> seconds per call, per name.

    With target_s, each timed region calls its fn n times (the same n for all, from the slowest
    warm-up) so that a region lasts about target_s: short regions are at the mercy of a busy
    machine's scheduler.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    slowest = 0.0
    for n in names:  # warm-up: first-call allocations and caches stay out of the timings
        sync(device)
        t0 = time.perf_counter()
        fns[n]()
        sync(device)
        slowest = max(slowest, time.perf_counter() - t0)
    calls = max(1, min(20, int(target_s / max(slowest, 1e-9)))) if target_s else 1
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[n]()
            sync(device)
            times[n].append((time.perf_counter() - t0) / calls)
    return times
