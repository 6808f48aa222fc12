"""What one `unrolled bench` run measures and how: the parts, repeats, threads, device; checked."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unrolled.errors import UserError

PARTS = ("train", "sample", "record", "memory")


@dataclass
class Settings:
    quick: bool = False  # fewer repeats and steps, a shorter memory sweep
    threads: int | None = None  # torch threads; None = torch's default for this machine
    device: str = "cpu"
    bf16: bool = False  # CUDA only: bf16 autocast for the unrolled contenders
    repeats: int | None = None  # timed repeats per contender (median reported)
    parts: tuple[str, ...] = PARTS

    @property
    def n_repeats(self) -> int:
        return self.repeats or (3 if self.quick else 5)


def settings(quick: bool = False, threads: int | None = None, device: str = "auto", bf16: bool = False,
             repeats: int | None = None, parts=None) -> Settings:
    """The settings of a run from the command's flags; a UserError names a flag that is wrong.
    device "auto" is cuda when torch sees one, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device torch knows; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but this torch sees no CUDA device; use --device cpu")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats must be a positive integer, got {repeats}")
    if bf16 and not device.startswith("cuda"):
        raise UserError("--bf16 (autocast) is for CUDA devices only; drop it or use --device cuda")
    return Settings(quick=quick, threads=threads, device=device, bf16=bf16, repeats=repeats,
                    parts=tuple(parts) if parts else PARTS)
