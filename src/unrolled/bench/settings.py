"""What one `unrolled bench` run measures and how: the parts, repeats, threads, device; checked."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unrolled.errors import UserError

PARTS = ("train", "sample", "record", "memory")


@dataclass
class Settings:
    quick: bool = False  # fewer repeats and steps, a shorter memory sweep
    threads: tuple[int, ...] | None = None  # thread counts, each measured in turn; None = default_threads()
    device: str = "cpu"
    bf16: bool = False  # CUDA only: bf16 autocast for the unrolled contenders
    repeats: int | None = None  # timed repeats per contender (median reported)
    parts: tuple[str, ...] = PARTS

    @property
    def n_repeats(self) -> int:
        return self.repeats or (3 if self.quick else 5)

    @property
    def thread_counts(self) -> tuple[int, ...]:
        return self.threads or default_threads()


def default_threads() -> tuple[int, ...]:
    """One thread and the machine's thread count (torch's default: its physical cores), once each."""
    return tuple(sorted({1, torch.get_num_threads()}))


def thread_list(threads) -> tuple[int, ...] | None:
    """--threads as given ("1,2", 2, [1, 2] or None) -> the thread counts in order, or None; a
    UserError names a count that is not a positive integer."""
    if threads is None:
        return None
    items = str(threads).split(",") if isinstance(threads, (str, int)) else list(threads)
    counts = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"--threads takes positive integers separated by commas (1,2), got {threads!r}")
        if int(text) not in counts:
            counts.append(int(text))
    return tuple(counts)


def settings(quick: bool = False, threads=None, device: str = "auto", bf16: bool = False,
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
    threads = thread_list(threads)
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats must be a positive integer, got {repeats}")
    if bf16 and not device.startswith("cuda"):
        raise UserError("--bf16 (autocast) is for CUDA devices only; drop it or use --device cuda")
    return Settings(quick=quick, threads=threads, device=device, bf16=bf16, repeats=repeats,
                    parts=tuple(parts) if parts else PARTS)
