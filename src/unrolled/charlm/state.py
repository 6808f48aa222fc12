"""The run record: everything a training run's checkpoint holds besides its weights, declared once.

A checkpoint folder (store.py writes and checks it) holds

    state.json             store.py's envelope (format, version, torch, sizes, checksums) around
                           RunRecord.to_json(): config, vocab, step, epoch, window, elapsed_s,
                           best_val_bpc, metrics, data, schedule, loop, optimizer
    state.safetensors      carry.h [carry.c]: the carried state of all W*B streams, (L, W*B, H) each;
                           rng.cpu [rng.cuda.<i>]: the random number generators' states
    optimizer.safetensors  state.<param>.<key>: the optimizer's per-parameter tensors
    model.safetensors      the CharLM's state_dict

A resumed run takes every number that decides its next update from here (nanoGPT keeps the same
things in its `checkpoint` dict). `RunRecord.from_json` reads every record this unrolled has
written (a key added later takes its start value, as `loop.skipped` does in models/linux-lstm-2x128)
and a partial one too (`unrolled inspect` shows whatever is there); the version is store.py's
VERSION, which counts changes of this record as well as of the folder.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

import torch

CARRY, RNG = "carry", "rng"  # the prefixes of state.safetensors' names


def _from_json(cls, obj: dict | None):
    """A record part from its stored dict: known keys only, a missing one at its start value."""
    if obj is None:
        return None
    start = {f.name: None if f.default is MISSING else f.default for f in fields(cls)}
    return cls(**{name: obj.get(name, value) for name, value in start.items()})


@dataclass
class LoopState:
    """Where the training loop is: the numbers of it that the next update depends on."""
    step: int = 0  # updates done
    epoch: int = 0  # passes over the training text begun (0-based)
    window: int = 0  # the next window of this pass
    best_val_bpc: float | None = None  # the best validation so far (best/ holds its weights)
    bad_evals: int = 0  # validations since the best (early stopping)
    plateau_scale: float = 1.0  # the plateau schedule's factor on lr
    plateau_best: float | None = None  # the plateau schedule's best validation
    plateau_bad: int = 0  # validations since plateau_best
    elapsed_s: float = 0.0  # training time, summed over every resume
    skipped: int = 0  # non-finite updates skipped (--nonfinite skip)

    from_json = classmethod(_from_json)

    def count_validation(self, val_bpc: float, plateau: bool, patience: int, gamma: float) -> bool:
        """After a validation: the best so far and the early-stopping count; with the plateau
        schedule, lr x gamma after `patience` validations without a new plateau best.
        -> whether it is the best so far."""
        improved = self.best_val_bpc is None or val_bpc < self.best_val_bpc
        if improved:
            self.best_val_bpc, self.bad_evals = val_bpc, 0
        else:
            self.bad_evals += 1
        if plateau:
            if self.plateau_best is None or val_bpc < self.plateau_best:
                self.plateau_best, self.plateau_bad = val_bpc, 0
            else:
                self.plateau_bad += 1
                if self.plateau_bad >= patience:
                    self.plateau_scale *= gamma
                    self.plateau_bad = 0
        return improved

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Metrics:
    """The bits per character at a checkpoint."""
    val_bpc: float | None = None  # this checkpoint's validation (None: not scored)
    best_val_bpc: float | None = None
    train_bpc: float | None = None  # the mean over the last log_every updates

    from_json = classmethod(_from_json)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class DataRecord:
    """The text a run trains on, so a resume can check it is the same text, and where it is."""
    fingerprint: dict | None = None  # {"chars": N, "crc32": ...} of the whole token array
    train_chars: int | None = None
    val_chars: int | None = None
    test_chars: int | None = None
    windows_per_epoch: int | None = None
    position: int | None = None  # window * stride: the next column of every stream

    from_json = classmethod(_from_json)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Schedule:
    """The learning-rate schedule at a checkpoint."""
    name: str | None = None  # TrainConfig.schedule
    lr: float | None = None  # the rate of the last update
    plateau_scale: float | None = None

    from_json = classmethod(_from_json)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RunRecord:
    """state.json's content, less store.py's envelope. step, epoch, window, elapsed_s and
    best_val_bpc repeat `loop`'s at the top level, where readers have always found them."""
    config: dict | None = None  # Config.to_dict(): the run's settings, its computed limits filled in
    vocab: dict | None = None  # Vocabulary.to_json()
    step: int | None = None
    epoch: int | None = None
    window: int | None = None
    elapsed_s: float = 0.0
    best_val_bpc: float | None = None
    metrics: Metrics | None = None
    data: DataRecord | None = None
    schedule: Schedule | None = None
    loop: LoopState | None = None
    optimizer: dict = field(default_factory=dict)  # optimizer_to_flat's JSON half: param_groups, scalars

    PARTS = {"metrics": Metrics, "data": DataRecord, "schedule": Schedule, "loop": LoopState}

    @classmethod
    def at(cls, loop: LoopState, **parts) -> "RunRecord":
        """The record of a run whose loop is at `loop` (copied: the loop goes on)."""
        return cls(step=loop.step, epoch=loop.epoch, window=loop.window, elapsed_s=loop.elapsed_s,
                   best_val_bpc=loop.best_val_bpc, loop=LoopState(**asdict(loop)), **parts)

    def to_json(self) -> dict:
        stored = {}
        for f in fields(self):
            value = getattr(self, f.name)
            stored[f.name] = value.to_json() if f.name in self.PARTS and value is not None else value
        return stored

    @classmethod
    def from_json(cls, stored: dict) -> "RunRecord":
        """A stored state.json (envelope keys are ignored) -> its record."""
        record = _from_json(cls, stored)
        for name, part in cls.PARTS.items():
            setattr(record, name, part.from_json(getattr(record, name)))
        if record.optimizer is None:
            record.optimizer = {}
        return record


# --- the tensors beside the record ----------------------------------------------------------------
def state_to_tensors(state, prefix: str = CARRY) -> dict[str, torch.Tensor]:
    """A carried recurrent state (a tensor, or an LSTM's (h, c)) -> named CPU tensors."""
    if state is None:
        return {}
    parts = state if isinstance(state, tuple) else (state,)
    names = ("h", "c")[:len(parts)]
    return {f"{prefix}.{n}": s.detach().to("cpu").contiguous().clone() for n, s in zip(names, parts)}


def state_from_tensors(tensors: dict[str, torch.Tensor], prefix: str = CARRY):
    """The inverse of `state_to_tensors`: a tensor, (h, c), or None when nothing was carried."""
    h, c = tensors.get(f"{prefix}.h"), tensors.get(f"{prefix}.c")
    if h is None:
        return None
    return (h, c) if c is not None else h


def carried_shapes(tensors: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in tensors.items() if k.startswith(f"{CARRY}.")}


def rng_to_tensors() -> dict[str, torch.Tensor]:
    out = {f"{RNG}.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"{RNG}.cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors[f"{RNG}.cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith(f"{RNG}.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def rng_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k for k in tensors if k.startswith(f"{RNG}."))


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state_dict -> ({"state.<param>.<key>": tensor}, the JSON-able rest:
    {"param_groups": [...], "scalars": {"<param>.<key>": value}})."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `optimizer_to_flat`: a state_dict for `optimizer.load_state_dict`."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
