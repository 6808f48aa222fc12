"""The update rule: optimizers, learning-rate schedules and gradient clipping.

    lr_k = schedule(k) * warmup(k)            (`learning_rate`)
    g <- g * min(1, c / ||g||)                 (clip norm; or clamp each g_i to [-c, c]: clip value)
    theta <- optimizer(theta, g, lr_k)         (adam, adamw, rmsprop, sgd, adagrad)
"""
from __future__ import annotations

import math

import torch

from unrolled.charlm.config import TrainConfig


def make_optimizer(params, t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "rmsprop":  # char-rnn's choice; alpha 0.95 as there
        return torch.optim.RMSprop(params, lr=t.lr, alpha=0.95, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay)


def learning_rate(t: TrainConfig, step: int, progress: float, plateau_scale: float = 1.0) -> float:
    """The learning rate of update `step` (0-based):

    1) linear warmup: lr * (step + 1) / warmup_steps for the first warmup_steps updates
    2) then the schedule: constant lr; step lr * gamma^(step // step_size); exponential
       lr * gamma^(step / 1000); plateau lr * gamma^(times validation stalled for `patience`);
       cosine min + (lr - min) (1 + cos(pi p)) / 2 with p the fraction of the run done after warmup
    """
    warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
    if t.schedule == "constant":
        return t.lr * warm
    if t.schedule == "step":
        return t.lr * warm * t.gamma ** (step // t.step_size)
    if t.schedule == "exponential":
        return t.lr * warm * t.gamma ** (step / 1000)
    if t.schedule == "plateau":
        return t.lr * warm * plateau_scale
    floor = t.lr * t.min_lr_ratio
    p = min(1.0, max(0.0, progress))
    return warm * (floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def progress(t: TrainConfig, decay_steps: int | None, step: int, elapsed_s: float) -> float:
    """The fraction of the run done, for the cosine schedule: of its decay_steps after warmup,
    or of its max_minutes, whichever is further."""
    fractions = []
    if decay_steps:
        fractions.append((step - t.warmup_steps) / max(1, decay_steps - t.warmup_steps))
    if t.max_minutes:
        fractions.append(elapsed_s / (60 * t.max_minutes))
    return max(fractions) if fractions else 0.0


def clip_gradients(params, t: TrainConfig) -> float:
    """Clip in place; return the gradient norm before clipping (Pascanu, Mikolov, Bengio 2013)."""
    params = [p for p in params if p.grad is not None]
    if t.clip == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, t.clip_value))
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    if t.clip == "value":
        torch.nn.utils.clip_grad_value_(params, t.clip_value)
    return norm
