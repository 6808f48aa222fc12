"""Light snapshots during training: the weights every N updates, to watch cells emerge.

    RUN/snapshots/step-0000100/     a checkpoint folder (`unrolled.load` opens it) holding the
    RUN/snapshots/step-0000200/     model's weights, config and vocabulary only: no optimizer,
    ...                             no carried state, no random-number states (a third the size)

`unrolled train --snapshot-every N` and `train_with_snapshots(N, ...)` write them; `unrolled
emergence RUN FILE` (`unrolled.understand.emergence`) scores cells, probes and saturation across
them. The snapshots are written from the training loop's per-update callback, so the Trainer
itself is unchanged: a run with snapshots trains exactly as one without (the same updates, the
same numbers; tests/test_emergence.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from unrolled import store
from unrolled.charlm.state import Metrics, RunRecord
from unrolled.charlm.trainer import Trainer
from unrolled.errors import UserError

FOLDER = "snapshots"
_NAME = re.compile(r"^step-(\d+)$")


def save_snapshot(trainer: Trainer) -> Path | None:
    """Write the weights at the trainer's current step to RUN/snapshots/step-NNNNNNN (rank 0)."""
    if not trainer.group.is_main:
        return None
    s = trainer.loop
    record = RunRecord.at(s, config=trainer.config.to_dict(), vocab=trainer.data.vocab.to_json(),
                          metrics=Metrics(None, s.best_val_bpc, trainer.recent_bpc()))
    model = getattr(trainer.model, "module", trainer.model)  # the model inside DDP's wrapper
    return store.save(trainer.run_dir / FOLDER / f"step-{s.step:07d}", record.to_json(), model.state_dict())


def train_with_snapshots(every: int, config=None, callback=None, verbose: bool = False, **overrides):
    """`unrolled.train`, writing a light snapshot every `every` updates (and at step 0, before
    the first). Returns the RunResult."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"--snapshot-every must be a positive number of updates, got {every!r}")
    holder: dict = {}

    def on_update(info: dict):
        if info["step"] % every == 0:
            save_snapshot(holder["trainer"])
        return callback(info) if callback is not None else None

    trainer = Trainer(config, callback=on_update, verbose=verbose, **overrides)
    holder["trainer"] = trainer
    if trainer.loop.step == 0:
        save_snapshot(trainer)  # the untrained model: where every curve starts
    return trainer.run()


def list_snapshots(run) -> list[tuple[int, Path]]:
    """[(step, folder), ...] of RUN/snapshots, by step; a UserError when there are none."""
    folder = Path(run) / FOLDER
    found = sorted((int(m.group(1)), p) for p in folder.glob("step-*") if (m := _NAME.match(p.name)) and p.is_dir())
    if not found:
        raise UserError(f"{run} has no snapshots in {folder}; train it with `unrolled train --snapshot-every N`")
    return found
