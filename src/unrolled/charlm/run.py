"""Open a saved run: a run or checkpoint folder -> its config, vocabulary, run record and model.

    folder --store.read--> JSON + tensors --RunRecord.from_json--> record
    record.config --Config.from_dict--> config;   record.vocab --Vocabulary.from_json--> vocab
    CharLM(vocab, config.model).load_state_dict(model.safetensors) --> the model, in eval mode

as nanoGPT rebuilds its model from `checkpoint['model_args']`. A run folder opens at its best/
checkpoint (by validation), or last/ when it has no best. Also here: the config of a run that
continues a saved one (`resolve_config`), and what `unrolled inspect` shows (`describe`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from unrolled import store
from unrolled.charlm.state import RunRecord, carried_shapes, rng_names
from unrolled.charlm.config import Config, part_of
from unrolled.errors import UserError
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary

# Settings a resumed run may change (limits, reporting, where it runs); anything else is fixed.
RESUMABLE = {"max_steps", "max_epochs", "max_minutes", "eval_every", "early_stopping", "log_every",
             "progress", "device", "resume", "eval_max_chars", "nonfinite"}


@dataclass
class OpenRun:
    """A checkpoint, opened: where it is, what it records, and the model it holds."""
    path: Path  # the checkpoint folder (a run's best/ or last/)
    config: Config
    vocab: Vocabulary
    record: RunRecord
    model: CharLM  # in eval mode, on the device asked for

    @property
    def name(self) -> str:
        """RUN/best for a run's checkpoint, else the folder's name."""
        return f"{self.path.parent.name}/{self.path.name}" if self.path.name in ("best", "last") else self.path.name


def open_run(path: str | os.PathLike, device: str | torch.device = "cpu", prefer: str = "best") -> OpenRun:
    """Read a checkpoint (its weights and record; not the optimizer) and build its model."""
    ckpt = store.read(path, prefer=prefer, full=False)
    try:
        record = RunRecord.from_json(ckpt.state)
        missing = [key for key in ("config", "vocab") if getattr(record, key) is None]
        if missing:
            raise KeyError(missing[0])
        config = Config.from_dict(record.config)
        vocab = Vocabulary.from_json(record.vocab)
        model = CharLM(vocab, config.model)
        model.load_state_dict(ckpt.model)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line, however long
        detail = detail if len(detail) <= 200 else detail[:200] + " ..."
        raise UserError(f"checkpoint {ckpt.path} does not describe a model this unrolled can build ({detail})") from None
    model.checkpoint_path = ckpt.path
    model.train_config = config.train
    model.data_config = config.data  # how its corpus was split (eval --split)
    return OpenRun(ckpt.path, config, vocab, record, model.to(device).eval())


def load(path: str | os.PathLike, device: str | torch.device = "cpu", prefer: str = "best") -> CharLM:
    """A checkpoint or run directory -> the CharLM it holds (in eval mode), on `device`.

    For a run directory the best checkpoint (by validation) is taken, or the last if there is none.
    """
    return open_run(path, device, prefer).model


def describe(path: str | os.PathLike) -> dict:
    """What `unrolled inspect` prints: everything in the checkpoint except the tensors' values.
    It builds no model, so it shows a checkpoint that no model can be built from, too."""
    ckpt = store.read(path, prefer="best", full=True)
    r = RunRecord.from_json(ckpt.state)
    vocab = r.vocab or {}
    symbols = vocab.get("symbols", "")
    part = lambda p: p.to_json() if p is not None else {}  # noqa: E731
    return {
        "path": str(ckpt.path),
        "format": ckpt.format_version,
        "written_by_torch": ckpt.torch_version,
        "step": r.step, "epoch": r.epoch, "window": r.window,
        "elapsed_minutes": r.elapsed_s / 60,
        "metrics": part(r.metrics),
        "best_val_bpc": r.best_val_bpc,
        "data": part(r.data),
        "vocab": {"kind": vocab.get("kind"), "size": len(symbols), "symbols": symbols},
        "config": r.config or {},
        "parameters": int(sum(v.numel() for v in ckpt.model.values())),
        "model_tensors": {k: list(v.shape) for k, v in ckpt.model.items()},
        "optimizer": {"param_groups": r.optimizer.get("param_groups"), "tensors": len(ckpt.optimizer)},
        "carried_state": carried_shapes(ckpt.tensors),
        "rng": rng_names(ckpt.tensors),
        "schedule": part(r.schedule),
    }


def resolve_config(config: Config | None, overrides: dict) -> tuple[Config, store.Checkpoint | None]:
    """The run's config: defaults < `config` < overrides; on resume, the saved one < limits given.
    -> (the config, checked; the checkpoint a resume continues from, or None)."""
    cfg = (config or Config()).updated(**overrides)
    if not cfg.train.resume:
        return cfg.check(), None
    run = Path(cfg.train.resume)
    if (run / "config.json").is_file() and not any((run / n).exists() for n in ("best", "last")) \
            and store.set_aside(run / "last") is None:
        raise UserError(f"run {run} stopped before its first checkpoint, so there is nothing to resume; "
                        "start it again with another --out (or delete that folder first)")
    saved = store.read(cfg.train.resume, prefer="last", full=True)
    base = Config.from_dict(RunRecord.from_json(saved.state).config)
    given = dict(overrides)
    if config is not None:  # an explicit Config with resume: only its limits count
        given.update({k: getattr(config.train, k) for k in RESUMABLE if getattr(config.train, k) is not None})
    for key, value in given.items():
        if value is None or key == "resume":
            continue
        current = getattr(getattr(base, part_of(key)), key)
        if key not in RESUMABLE and value != current:
            raise UserError(f"--{key.replace('_', '-')} cannot change when resuming (the run has {current!r}); "
                            "start a new run with --init-from to change it")
        base = base.updated(**{key: value})
    return base.updated(resume=cfg.train.resume).check(), saved
