"""Where a run computes: the device, and whether the model it asks for fits this machine."""
from __future__ import annotations

import os

import torch

from unrolled.cells import facts
from unrolled.errors import UserError


def pick_device(name: str) -> torch.device:
    """--device auto, cpu, cuda, cuda:1 -> the device; one that is not here is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):  # meta, mps, xla, ...: not devices unrolled runs on
        raise UserError(f"--device {name!r} is not a device unrolled runs on; use auto, cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asks for a GPU but this machine has none; use --device cpu")
    return dev


def parameter_count(vocab_size: int, m) -> int:
    """Parameters of a CharLM, from its config alone (before allocating any of them):
    embedding V*E, then per layer G*H*(D + H + 2) with G gates and D its input width (G*H*(D + 1)
    for a cell without weight_hh), head V*(H + 1)."""
    cell = facts(m.cell)
    gates, first = cell.num_gates, m.embedding_size or vocab_size
    hh = m.hidden_size + 1 if cell.hidden_weights else 0  # weight_hh and bias_hh
    layers = gates * m.hidden_size * (first + 1 + hh)
    layers += (m.num_layers - 1) * gates * m.hidden_size * (m.hidden_size + 1 + hh)
    return vocab_size * m.embedding_size + layers + vocab_size * (m.hidden_size + 1)


def check_fits_in_memory(vocab_size: int, m) -> None:
    """Refuse a model whose weights, gradients and two optimizer moments (4 x 4 bytes a parameter)
    exceed this machine's memory: allocating it would fail late, or page the machine to a halt."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this system: let the allocator decide
        return
    n = parameter_count(vocab_size, m)
    if 16 * n > memory:
        raise UserError(f"a model of --hidden-size {m.hidden_size} x --num-layers {m.num_layers} (embedding "
                        f"{m.embedding_size}) has {n:,} parameters, {16 * n / 2**30:,.0f} GiB to train, more than this "
                        f"machine's {memory / 2**30:,.0f} GiB; use a smaller model")
