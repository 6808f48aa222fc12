"""How a run starts: its data, its folder, its model and optimizer, its limits, and, for a run
that continues, the carried state from its last checkpoint. `Trainer.__init__` calls these in
this order (the order decides which error a user sees first, and when the RNG is seeded)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch

from unrolled.charlm import distributed as ddp
from unrolled import store
from unrolled.charlm.data import Data, make_streams, prepare_data
from unrolled.charlm.optim import make_optimizer
from unrolled.charlm.state import RunRecord, state_from_tensors
from unrolled.charlm.config import Config, TrainConfig
from unrolled.errors import UserError
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary


def read_data(cfg: Config, resumed: RunRecord | None, group: ddp.Group
              ) -> tuple[Config, Data, ddp.RankStreams, store.Checkpoint | None]:
    """The data and its vocabulary: the checkpoint's when continuing (`resumed`) or fine-tuning
    (--init-from, whose model settings the run takes). -> (the config, the data, this process's
    streams, the --init-from checkpoint or None)."""
    t, init, vocab = cfg.train, None, None
    if resumed is not None:
        vocab = Vocabulary.from_json(resumed.vocab)
    elif t.init_from:
        init = store.read(t.init_from, prefer="best", full=False)
        record = RunRecord.from_json(init.state)
        vocab = Vocabulary.from_json(record.vocab)
        cfg = replace(cfg, model=Config.from_dict(record.config).model)
    data = prepare_data(cfg, vocab)
    if resumed is not None and (resumed.data.fingerprint if resumed.data else None) != data.fingerprint:
        raise UserError(f"the text of run {t.resume} changed since it started (different length or contents); "
                        "resume needs the same text, or start a new run with --init-from")
    return cfg, data, make_streams(data.train, t, group), init


def make_run_dir(cfg: Config, resumed: RunRecord | None, group: ddp.Group) -> Path:
    """The run directory: the one resumed, or a new empty one (--out, or runs/<date-time>)."""
    t = cfg.train
    run_dir = Path(t.resume) if resumed is not None else Path(t.out or f"runs/{datetime.now():%Y%m%d-%H%M%S}")
    if resumed is None and group.is_main:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir} already holds files; pass --resume {run_dir} to continue that run, "
                            "or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def build_model(cfg: Config, vocab: Vocabulary, init: store.Checkpoint | None, device: torch.device
                ) -> tuple[CharLM, torch.optim.Optimizer]:
    """The model (seeded, with --init-from's weights) on `device`, and its optimizer."""
    torch.manual_seed(cfg.train.seed)
    try:
        model = CharLM(vocab, cfg.model)
    except (RuntimeError, MemoryError) as e:  # the allocator refuses a model larger than memory
        if "alloc" not in str(e) and not isinstance(e, MemoryError):
            raise
        raise UserError(f"a model of --hidden-size {cfg.model.hidden_size} x --num-layers "
                        f"{cfg.model.num_layers} does not fit in this machine's memory; use a smaller model") from None
    if init is not None:
        model.load_state_dict(init.model)
    model.to(device)
    return model, make_optimizer(model.parameters(), cfg.train)


@dataclass(frozen=True)
class Limits:
    """When the run stops and where the cosine schedule ends, computed once at the start."""
    per_epoch: int  # windows in one pass over the training text
    total_steps: int | None  # min(max_steps, ceil(max_epochs * per_epoch)); None: only a time limit
    decay_steps: int | None  # the cosine horizon: given, or total_steps when the run began


def run_limits(cfg: Config, per_epoch: int, resumed: bool) -> tuple[Config, Limits]:
    """The run's limits: one epoch when none is given; the cosine horizon fixed when the run
    begins (a resume keeps its saved one). -> (a copy of the config with them filled in, as the
    run prints and saves it, so a resume reads them back; the limits)."""
    t = cfg.train
    max_epochs, decay_steps = t.max_epochs, t.decay_steps
    steps = [s for s in (t.max_steps, math.ceil(t.max_epochs * per_epoch) if t.max_epochs else None) if s]
    if not steps and not t.max_minutes:
        max_epochs, steps = 1.0, [per_epoch]
    total = min(steps) if steps else None
    if decay_steps is None and total is not None and not resumed:
        decay_steps = total
    return cfg.updated(max_epochs=max_epochs, decay_steps=decay_steps), Limits(per_epoch, total, decay_steps)


def resumed_carry(saved: store.Checkpoint, t: TrainConfig, group: ddp.Group, device: torch.device, run_dir: Path):
    """The carried state a checkpoint holds for all W * B streams -> this process's B rows, on
    `device` (None when nothing was carried)."""
    carry = state_from_tensors(saved.tensors)
    if carry is None:
        return None
    rows = (carry[0] if isinstance(carry, tuple) else carry).shape[1]
    if rows != t.batch_size * group.world_size:
        raise UserError(f"run {run_dir} carries {rows} streams; resume it with processes x --batch-size "
                        f"= {rows} (now {group.world_size} x {t.batch_size})")
    carry = ddp.rank_state(carry, group, t.batch_size)
    return tuple(s.to(device) for s in carry) if isinstance(carry, tuple) else carry.to(device)


def what_runs(cfg: Config, data: Data, model: CharLM, device: torch.device, group: ddp.Group,
              verbose: bool) -> list[str]:
    """The lines a run prints before its first update: the data and model, DDP, the settings."""
    t = cfg.train
    lines = [f"unrolled train: {len(data.vocab)} symbols, {len(data.train):,} train / {len(data.val):,} val / "
             f"{len(data.test):,} test characters, {model.num_parameters():,} parameters on {device}"
             + (f" ({torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)})"
                if device.type == "cpu" else "")]
    if group.active:
        lines.append(f"DistributedDataParallel ({group.backend}): {group.world_size} processes x batch "
                     f"{t.batch_size} = effective batch {group.world_size * t.batch_size} streams; lr {t.lr:g} "
                     "(not scaled: each update is the mean over all streams)")
    return lines + [cfg.describe(everything=verbose)]
