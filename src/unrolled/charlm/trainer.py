"""Training a character language model with truncated backpropagation through time.

The loop (Sutskever 2013, ch. 2: every k1 steps, backpropagate k2 steps):

    state = 0
    for each window k of B parallel contiguous streams (width k2 = seq_len, moving k1 = stride):
        1) run the window forward from the carried state; keep the state k1 steps in
        2) loss = mean cross-entropy of the last k1 positions (the ones no window scored yet)
        3) backward (through the k2 steps of this window only), clip, optimizer step
        4) state = that state, detached: carried forward, but the graph behind it is cut

The streams are never shuffled (that would break the carried state); the state is reset to
zeros at the start of every pass over the text. With bptt = "full" a window is the whole stream.

`Trainer` holds the run (as minGPT's Trainer does): its setup builds the data, model, optimizer
and limits; `step()` is one update, `validate()` one pass over the validation split, `save(name)`
one checkpoint, and `run()` the loop around them. Everything that decides the next update is in
the checkpoint (charlm/state.py), so a resumed run ends with the same weights as the same run
never stopped (bit for bit on CPU; tests/test_train_resume.py).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unrolled import store
from unrolled.charlm import distributed as ddp, tbptt
from unrolled.charlm.device import check_fits_in_memory, pick_device
from unrolled.charlm.interrupt import Interrupt
from unrolled.charlm.optim import clip_gradients, learning_rate, progress
from unrolled.charlm.run import load, resolve_config
from unrolled.charlm.start import build_model, make_run_dir, read_data, resumed_carry, run_limits, what_runs
from unrolled.charlm.state import (DataRecord, LoopState, Metrics, RunRecord, Schedule, optimizer_from_flat,
                                   optimizer_to_flat, restore_rng, rng_to_tensors, state_to_tensors)
from unrolled.charlm.config import Config
from unrolled.errors import UserError
from unrolled.charlm.evaluate import evaluate_tokens, stream_figures, summarize
from unrolled.charlm.model import CharLM

LN2 = math.log(2)
STOPS = (None, "max_steps", "max_epochs", "max_minutes", "early_stopping", "interrupted")
# With --nonfinite skip, this many non-finite updates in a row mean the run has diverged: it stops.
MAX_SKIPS_IN_A_ROW = 10


@dataclass
class RunResult:
    """What `train` returns: where the run is, the model at its end, and its numbers."""
    run_dir: Path
    model: CharLM
    step: int
    epoch: int
    stopped: str  # max_steps, max_epochs, max_minutes, early_stopping or interrupted
    metrics: dict = field(default_factory=dict)  # train_bpc, val_bpc, best_val_bpc, test_bpc, chars_per_sec, ...

    @property
    def best(self) -> Path:
        return self.run_dir / "best"

    @property
    def last(self) -> Path:
        return self.run_dir / "last"


@dataclass(frozen=True)
class Update:
    """What one `Trainer.step()` did."""
    step: int  # its number, from 1
    lr: float
    loss: float  # mean cross-entropy of the window's scored positions, in nats
    grad_norm: float  # before clipping
    applied: bool  # False: the loss or gradient was not finite and the update was skipped
    chars: int  # characters scored, over all processes


class NonFinite(UserError):
    """A non-finite loss or gradient that stops the run (--nonfinite stop, or too many skips)."""


class Trainer:
    """A training run: `Trainer(config, **overrides).run()` is `train(config, **overrides)`.

    `config` is a `Config` (defaults if None); keyword overrides set any field by name.
    `callback(info)` is called after every update with a dict (step, loss, ...); returning True
    stops the run there, as Ctrl-C does. `verbose` prints every setting at the start.
    """

    def __init__(self, config: Config | None = None, callback: Callable[[dict], bool | None] | None = None,
                 verbose: bool = False, **overrides):
        cfg, saved = resolve_config(config, overrides)
        resumed = RunRecord.from_json(saved.state) if saved is not None else None
        self.callback, self.interrupt = callback, Interrupt()
        self.device = pick_device(cfg.train.device)
        self.group = ddp.setup(self.device)  # a group of one unless started by torchrun
        self.device = ddp.device_for(self.group, self.device)
        self.quiet = not (cfg.train.progress and self.group.is_main)  # rank 0 speaks and writes
        cfg, self.data, self.streams, init = read_data(cfg, resumed, self.group)
        self.val_batch = min(cfg.train.batch_size, 64)
        check_fits_in_memory(len(self.data.vocab), cfg.model)  # before the run directory is made
        self.run_dir = make_run_dir(cfg, resumed, self.group)
        self.model, self.optimizer = build_model(cfg, self.data.vocab, init, self.device)
        self.config, self.limits = run_limits(cfg, len(self.streams), resumed=saved is not None)
        self.loop, self.carry = LoopState(), None
        if saved is not None:
            self._resume(saved, resumed)
        elif self.group.is_main:
            (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1, default=float))
        for line in what_runs(self.config, self.data, self.model, self.device, self.group, verbose):
            self.say(line)
        self.window_loss = tbptt.WindowLoss(self.model, self.streams.stride)
        if self.group.active:  # gradients are averaged over ranks during backward
            self.window_loss = nn.parallel.DistributedDataParallel(
                self.window_loss, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model.train()
        # The run's own bookkeeping, not saved: the step of the last periodic checkpoint, the
        # losses since the last train row, the throughput counters, the files run() writes.
        self.saved_at = self.loop.step if saved is not None else -1
        self.skips_in_a_row, self.recent = 0, []
        self.t_start = self.t_rate = self.metrics_file = self.bar = None  # run() opens and starts these
        self.chars_done = 0

    def _resume(self, saved: store.Checkpoint, record: RunRecord) -> None:
        """Everything that decides the next update, from the run's last checkpoint."""
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(optimizer_from_flat(saved.optimizer, record.optimizer))
        self.loop = record.loop
        self.carry = resumed_carry(saved, self.config.train, self.group, self.device, self.run_dir)
        restore_rng(saved.tensors)
        self.say(f"resuming {self.run_dir} at step {self.loop.step} (epoch {self.loop.epoch}, "
                 f"window {self.loop.window})")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text)

    def log(self, row: dict) -> None:
        """One row of metrics.jsonl (rank 0, while `run()` runs)."""
        if self.metrics_file is not None:
            self.metrics_file.write(json.dumps(row, default=float) + "\n")
            self.metrics_file.flush()

    # --- one update ----------------------------------------------------------------------------
    def step(self) -> Update:
        """One truncated-BPTT update on the next window: lr, forward from the carried state,
        backward, clip, and the optimizer step, unless the loss or gradient is not finite."""
        t, s = self.config.train, self.loop
        if s.window >= self.limits.per_epoch:  # a new pass: the streams restart, so does the state
            s.epoch, s.window, self.carry = s.epoch + 1, 0, None
        w = self.streams.window(s.window)
        x, y = w.x.to(self.device), w.y.to(self.device)  # (B, k2)
        lr = learning_rate(t, s.step, progress(t, self.limits.decay_steps, s.step, s.elapsed_s), s.plateau_scale)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        loss, self.carry = self.window_loss(x, y, self.carry)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.model.parameters(), t)
        loss_value = loss.item()
        # Checked before the update, so NaN never reaches the weights or a checkpoint. Under DDP
        # the gradient norm is the same on every rank (gradients are averaged), so all agree.
        applied = math.isfinite(grad_norm) and (self.group.active or math.isfinite(loss_value))
        if applied:
            self.optimizer.step()
            self.skips_in_a_row = 0
        else:
            self._skip(loss_value, grad_norm)
        s.step += 1
        s.window += 1
        chars = x.shape[0] * self.group.world_size * min(self.streams.stride, x.shape[1])
        return Update(s.step, lr, loss_value, grad_norm, applied, chars)

    def _skip(self, loss: float, grad_norm: float) -> None:
        """A non-finite update: not applied; the run stops unless --nonfinite skip allows it."""
        t = self.config.train
        self.skips_in_a_row += 1
        if t.nonfinite == "stop" or self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            kept = (f"{self.run_dir / 'last'} (step {self.saved_at}) is the last good checkpoint"
                    if self.saved_at >= 0 else "no checkpoint was written yet")
            what = f"{MAX_SKIPS_IN_A_ROW} updates in a row had" if t.nonfinite == "skip" else "the update had"
            raise NonFinite(f"{what} a non-finite loss or gradient (loss {loss}, gradient norm {grad_norm}) at "
                            f"step {self.loop.step + 1}, so training stopped without applying it; {kept}; lower "
                            f"--lr (now {t.lr:g}) or --clip-value and start again, or resume with --nonfinite "
                            "skip to skip such updates")
        self.loop.skipped += 1
        parts = self.carry if isinstance(self.carry, tuple) else (self.carry,)
        if self.carry is not None and not all(bool(torch.isfinite(s).all()) for s in parts):
            self.carry = None  # a state that overflowed would poison every later window

    # --- validation and checkpoints ------------------------------------------------------------
    def validate(self, max_chars: int | None = None) -> float | None:
        """Bits per character of the validation split (its first `max_chars`), None if empty."""
        t = self.config.train
        seq_len = max(t.seq_len, 256) if t.bptt == "truncated" else self.streams.seq_len
        nats, count = evaluate_tokens(self.model, self.data.val, self.val_batch, seq_len, max_chars)
        return nats / count / LN2 if count else None

    def recent_bpc(self) -> float | None:
        """Train bits per character: the mean over the last log_every applied updates."""
        return sum(self.recent) / len(self.recent) / LN2 if self.recent else None

    def save(self, name: str, val_bpc: float | None = None) -> None:
        """Write checkpoint RUN/name. A collective under DDP (every rank's carried state is
        gathered), so every rank calls it; rank 0 writes."""
        whole_carry = ddp.gather_state(self.carry, self.group)
        if not self.group.is_main:
            return
        s, data = self.loop, self.data
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer)
        record = RunRecord.at(
            s, config=self.config.to_dict(), vocab=data.vocab.to_json(),
            metrics=Metrics(val_bpc, s.best_val_bpc, self.recent_bpc()),
            data=DataRecord(data.fingerprint, len(data.train), len(data.val), len(data.test),
                            self.limits.per_epoch, s.window * self.streams.stride),
            schedule=Schedule(self.config.train.schedule, self.optimizer.param_groups[0]["lr"], s.plateau_scale),
            optimizer=opt_meta)
        tensors = {**state_to_tensors(whole_carry), **rng_to_tensors()}
        store.save(self.run_dir / name, record.to_json(), self.model.state_dict(), opt_tensors, tensors)

    def _evaluate_and_save(self, final: bool) -> Metrics:
        """Validation (unless Ctrl-C skips it) and its bookkeeping, then last/ and, if best, best/."""
        s, t = self.loop, self.config.train
        if final:
            self.say(f"scoring the validation split ({len(self.data.val):,} characters)...")
        val = self.interrupt.score(partial(self.validate, None if final else t.eval_max_chars))
        improved = False
        if val is not None:
            self.log({"step": s.step, "epoch": s.epoch, "split": "val", "time_s": s.elapsed_s,
                      "loss": val * LN2, "bpc": val})
            improved = s.count_validation(val, t.schedule == "plateau", t.patience, t.gamma)
        self.save("last", val)
        # save is a collective: every rank must agree whether best/ is written (rank 0 decides)
        if bool(ddp.agree(int(improved), self.group)):
            self.save("best", val)
        return Metrics(val, s.best_val_bpc, self.recent_bpc())

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Train until a limit, early stopping or Ctrl-C; then save, validate and test."""
        t = self.config.train
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") if self.group.is_main else None
        if t.progress and self.group.is_main:
            from tqdm.auto import tqdm  # the progress bar's import takes a moment: only when shown
            self.bar = tqdm(total=self.limits.total_steps, initial=self.loop.step, unit="step", dynamic_ncols=True,
                            disable=None, file=sys.stderr)
        self.t_start = time.perf_counter() - self.loop.elapsed_s
        self.chars_done, self.t_rate = 0, time.perf_counter()
        with self.interrupt:
            try:
                stopped = self._loop()
            except NonFinite:
                self._close()
                raise
            return self._finish(stopped)

    def _loop(self) -> str:
        """Updates until a stop condition holds; -> its name. Stops are checked only at a window
        edge, so the saved state is whole."""
        while True:
            self.loop.elapsed_s = time.perf_counter() - self.t_start
            stopped = self._stop_reason()
            if self.group.active:  # time limits and Ctrl-C differ between processes: rank 0 decides for all
                stopped = STOPS[ddp.agree(STOPS.index(stopped), self.group)]
            if stopped:
                return stopped
            self._after_update(self.step())

    def _stop_reason(self) -> str | None:
        t, s, total = self.config.train, self.loop, self.limits.total_steps
        if total is not None and s.step >= total:
            return "max_steps" if t.max_steps and s.step >= t.max_steps else "max_epochs"
        if t.max_minutes and s.elapsed_s >= 60 * t.max_minutes:
            return "max_minutes"
        if t.early_stopping and s.bad_evals >= t.early_stopping:
            return "early_stopping"
        return "interrupted" if self.interrupt.requested else None

    def _after_update(self, u: Update) -> None:
        """After an update: its metrics row, the progress bar, the periodic validation, the callback."""
        t, s = self.config.train, self.loop
        if not u.applied:
            self.log({"step": u.step, "epoch": s.epoch, "split": "train", "skipped": "nonfinite",
                      "loss": u.loss if math.isfinite(u.loss) else None,
                      "grad_norm": u.grad_norm if math.isfinite(u.grad_norm) else None})
        else:
            self.recent.append(u.loss)
            del self.recent[:-t.log_every]
        self.chars_done += u.chars
        if u.applied and self.recent and s.step % t.log_every == 0:
            self._log_train(u)
        if self.bar is not None:
            self.bar.update(1)
        if s.step % t.eval_every == 0:
            s.elapsed_s = time.perf_counter() - self.t_start
            self._evaluate_and_save(final=False)
            self.saved_at = s.step
        if self.callback is not None and self.callback({"step": s.step, "loss": u.loss, "lr": u.lr,
                                                        "epoch": s.epoch, "window": s.window}):
            self.interrupt.requested = True

    def _log_train(self, u: Update) -> None:
        t, now = self.config.train, time.perf_counter()
        cps = self.chars_done / max(now - self.t_rate, 1e-9)
        self.chars_done, self.t_rate = 0, now
        self.log({"step": u.step, "epoch": self.loop.epoch, "split": "train", "loss": u.loss,
                  "bpc": self.recent_bpc(), "lr": u.lr, "grad_norm": u.grad_norm, "chars_per_sec": cps,
                  "time_s": time.perf_counter() - self.t_start})
        if self.bar is not None:
            post = {"loss": f"{u.loss:.3f}", "bpc": f"{self.recent_bpc():.3f}", "char/s": f"{cps:,.0f}"}
            if t.max_minutes:
                post["left"] = f"{max(0.0, t.max_minutes * 60 - (now - self.t_start)) / 60:.1f}min"
            self.bar.set_postfix(post, refresh=False)

    def _finish(self, stopped: str) -> RunResult:
        """The end: validate and save (unless this very step was just saved), then test the best.
        A Ctrl-C run saves `last` first: a second Ctrl-C may skip the scoring, never the save."""
        s = self.loop
        self.interrupt.training = False  # from here a Ctrl-C during scoring skips it
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        s.elapsed_s = time.perf_counter() - self.t_start
        if self.saved_at != s.step:
            if stopped == "interrupted":
                self.save("last")
                self.say(f"saved {self.run_dir / 'last'}; scoring {len(self.data.val):,} validation characters "
                         "(Ctrl-C to skip)...")
            metrics = self._evaluate_and_save(final=stopped != "interrupted")
        else:
            metrics = Metrics(s.best_val_bpc, s.best_val_bpc, self.recent_bpc())
        result = {"train_bpc": self.recent_bpc(), "val_bpc": metrics.val_bpc, "best_val_bpc": s.best_val_bpc,
                  "steps": s.step, "minutes": s.elapsed_s / 60, "stopped": stopped}
        if stopped != "interrupted" and len(self.data.test) >= 2 and self.group.is_main \
                and not self.interrupt.skip_scoring:
            result.update(self._test())
        self._close()
        self.window_loss = None  # DDP's reducer holds the process group: free it before the group goes
        ddp.teardown(self.group)
        self.model.eval()
        self.model.vocab = self.data.vocab
        _print_summary(self.say, self.run_dir, result)  # a late Ctrl-C still lands in our handler: said, not a traceback
        return RunResult(self.run_dir, self.model, s.step, s.epoch, stopped, result)

    def _test(self) -> dict:
        """test_bpc and the rest of the test split's numbers, of best/ (or last/ without one)."""
        best = self.run_dir / ("best" if (self.run_dir / "best").exists() else "last")
        self.say(f"scoring {best.name}/ on the test split ({len(self.data.test):,} characters)...")
        streams: list = []  # one per stream of the pass, for the report beside the mean
        scored = self.interrupt.score(partial(evaluate_tokens, load(best, device=self.device), self.data.test,
                                              self.val_batch, max(self.config.train.seq_len, 256), per_stream=streams))
        if scored is None:
            return {}
        figures, warning = stream_figures(streams, self.data.test, "the test split")
        result = {("test_bpc" if k == "bits_per_char" else f"test_{k}"): v
                  for k, v in {**summarize(*scored), **figures}.items()}
        if warning:  # said even when quiet: the test figure is not what it seems
            print(f"unrolled: note: {warning}", file=sys.stderr)
        self.log({"step": self.loop.step, "epoch": self.loop.epoch, "split": "test", "loss": result["test_nats_per_char"],
                  "bpc": result["test_bpc"], "checkpoint": best.name, "time_s": self.loop.elapsed_s, **figures})
        return result

    def _close(self) -> None:
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(config: Config | None = None, callback: Callable[[dict], bool | None] | None = None,
          verbose: bool = False, **overrides) -> RunResult:
    """Train a character language model; return a `RunResult`.

    `config` is a `Config` (defaults if None); keyword overrides set any field by name, e.g.
    `train(paths=["input.txt"], cell="gru", max_steps=1000)`. `resume="RUN"` continues a run
    where it stopped (its saved config, with new limits if given); `init_from="CKPT"` starts a new
    run from a checkpoint's weights and vocabulary. `callback(info)` is called after every update
    with a dict (step, loss, ...); returning True stops the run there, as Ctrl-C does.
    `verbose` prints every setting at the start (otherwise only those that differ from the defaults).
    """
    return Trainer(config, callback=callback, verbose=verbose, **overrides).run()


def _print_summary(say, run_dir: Path, r: dict) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    say(f"stopped ({r['stopped']}) after {r['steps']} steps, {r['minutes']:.1f} min: train {fmt(r['train_bpc'])} "
        f"val {fmt(r['val_bpc'])} best val {fmt(r['best_val_bpc'])} test {fmt(r.get('test_bpc'))} bits/char")
    say(f"run directory: {run_dir}")
    if r["stopped"] == "interrupted":  # said even when quiet: it is what to do next
        print(f"unrolled: stopped at step {r['steps']} and saved; continue with: unrolled train --resume {run_dir}",
              file=sys.stderr)
