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

Everything that decides the next update is saved in the checkpoint (weights, optimizer,
schedule, data position, carried state, RNG), so a resumed run ends with the same weights as
the same run never stopped (bit for bit on CPU; tests/test_train_resume.py).

The data source is `TokenStreams` over a token array-like: a memory-mapped token file or a
sharded reader needs only a different array here, not a different loop.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unrolled import checkpoint as ckpt_io
from unrolled import distributed as ddp
from unrolled.config import Config, TrainConfig, part_of
from unrolled.errors import UserError
from unrolled.evaluate import evaluate_tokens, summarize
from unrolled.lm import CharLM
from unrolled.recurrent import detach_state
from unrolled.prepare import is_prepared, load_prepared
from unrolled.text import Vocabulary, read_corpus, split, to_tokens

LN2 = math.log(2)
STOPS = (None, "max_steps", "max_epochs", "max_minutes", "early_stopping", "interrupted")

# Settings a resumed run may change (limits, reporting, where it runs); anything else is fixed.
RESUMABLE = {"max_steps", "max_epochs", "max_minutes", "eval_every", "early_stopping", "log_every",
             "progress", "device", "resume", "eval_max_chars", "nonfinite"}
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


# --- optimizers and schedules --------------------------------------------------------------------
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


def clip_gradients(params, t: TrainConfig) -> float:
    """Clip in place; return the gradient norm before clipping (Pascanu, Mikolov, Bengio 2013)."""
    params = [p for p in params if p.grad is not None]
    if t.clip == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, t.clip_value))
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    if t.clip == "value":
        torch.nn.utils.clip_grad_value_(params, t.clip_value)
    return norm


# --- one truncated-BPTT update -------------------------------------------------------------------
def tbptt_loss(model: CharLM, x: torch.Tensor, y: torch.Tensor, state, stride: int):
    """Forward one window x, y (B, k2) from the carried `state`.

    -> (mean cross-entropy in nats over the last `stride` = k1 positions, the state after k1
    steps detached for the next window). Backward from the loss reaches all k2 steps of this
    window and stops at `state`, which the caller detached at the previous window edge.
    """
    k2 = x.shape[1]
    k1 = min(stride, k2)
    h1, s_mid = model.rnn(model.embed(x[:, :k1]), state)  # (B, k1, H)
    if k1 < k2:
        h2, _ = model.rnn(model.embed(x[:, k1:]), s_mid)  # (B, k2 - k1, H)
        h = torch.cat([h1, h2], dim=1)[:, k2 - k1:]  # (B, k1, H): only the new positions are scored
    else:
        h = h1  # (B, k2, H)
    logits = model.head(h)  # (B, k1, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, k2 - k1:].reshape(-1))
    # The one place the state is detached: the next window starts from these values, but its
    # backward pass must stop here, or the graph (and memory) would grow with the whole corpus.
    return loss, detach_state(s_mid)


class WindowLoss(nn.Module):
    """`tbptt_loss` as one module call: DistributedDataParallel syncs gradients of what runs
    inside its wrapped module's forward, and a window may run the layer twice (k1 < k2)."""

    def __init__(self, model: CharLM, stride: int):
        super().__init__()
        self.model, self.stride = model, stride

    def forward(self, x, y, state):
        return tbptt_loss(self.model, x, y, state, self.stride)


# --- data ----------------------------------------------------------------------------------------
@dataclass
class Data:
    vocab: Vocabulary
    train: object  # token array-likes
    val: object
    test: object
    fingerprint: dict


def fingerprint(tokens: np.ndarray, chunk: int = 1 << 24) -> dict:
    crc = 0
    for i in range(0, len(tokens), chunk):  # in chunks: a memory-mapped corpus may not fit in memory
        crc = zlib.crc32(np.ascontiguousarray(tokens[i:i + chunk]).tobytes(), crc)
    return {"chars": int(len(tokens)), "crc32": crc}


def prepare_data(cfg: Config, vocab: Vocabulary | None = None, what: str = "the training text") -> Data:
    d = cfg.data
    fractions = (1 - d.val_fraction - d.test_fraction, d.val_fraction, d.test_fraction)
    if len(d.paths) == 1 and is_prepared(d.paths[0]):  # a corpus made by `unrolled prepare`: memory-mapped
        prepared = load_prepared(d.paths[0])
        if vocab is not None and vocab != prepared.vocab:
            raise UserError(f"the prepared corpus {d.paths[0]} has another vocabulary than the checkpoint; "
                            "prepare the text again or train without --init-from")
        train, val, test = split(prepared.tokens, fractions)
        # the checksum prepare computed: reading 2 GB again would fill resident memory with its pages
        return Data(prepared.vocab, train, val, test, {"chars": prepared.meta["tokens"], "crc32": prepared.meta["crc32"]})
    text = read_corpus(d.paths, byte_level=d.byte_level)
    if vocab is None:
        vocab = Vocabulary.from_text(text)
    elif vocab.byte_level != d.byte_level:
        raise UserError("--byte-level must match the checkpoint's vocabulary "
                        f"({'bytes' if vocab.byte_level else 'characters'})")
    ids = vocab.encode(text, unknown=d.unknown, replacement=d.replacement, what=what)
    tokens = to_tokens(ids, len(vocab))
    train, val, test = split(tokens, fractions)
    return Data(vocab, train, val, test, fingerprint(tokens))


def make_streams(tokens, t: TrainConfig, group: ddp.Group = ddp.SINGLE) -> ddp.RankStreams:
    """This process's B of the W * B parallel streams (W = 1 without torchrun)."""
    n, rows = len(tokens), t.batch_size * group.world_size
    if t.bptt == "full":
        row = (n - 1) // rows
        if row < 1:
            raise UserError(f"the training text ({n} characters) is too short for --batch-size {t.batch_size}"
                            f"{f' x {group.world_size} processes' if group.active else ''}; "
                            "use a smaller batch or more text")
        return ddp.RankStreams(tokens, t.batch_size, row, None, group)
    streams = ddp.RankStreams(tokens, t.batch_size, t.seq_len, t.stride, group)
    if len(streams) == 0:
        raise UserError(f"the training text ({n} characters) is too short for --batch-size {t.batch_size} "
                        f"x --seq-len {t.seq_len}{f' x {group.world_size} processes' if group.active else ''} "
                        f"(it needs at least {rows * t.seq_len + 1}); use smaller values or more text")
    return streams


def pick_device(name: str) -> torch.device:
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
    embedding V*E, then per layer G*H*(D + H + 2) with G gates and D its input width, head V*(H + 1)."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}.get(m.cell, 4)
    first = m.embedding_size or vocab_size
    layers = gates * m.hidden_size * (first + m.hidden_size + 2)
    layers += (m.num_layers - 1) * gates * m.hidden_size * (2 * m.hidden_size + 2)
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


# --- the run -------------------------------------------------------------------------------------
class SkipScoring(Exception):
    """Raised inside a validation or test pass by a Ctrl-C that asks to skip it."""


class _Interrupt:
    """Ctrl-C during a run: the first asks the loop to stop at the next window edge (so the
    checkpoint is whole), says so at once, and the run saves `last` before it scores anything;
    a second one skips the scoring (the pass under way ends at once), never the save."""

    def __init__(self):
        self.requested = False  # stop at the next window edge
        self.skip_scoring = False  # no more validation or test passes
        self._in_scoring = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._in_scoring:
            self.skip_scoring = True
            print("\nunrolled: skipping the scoring (the checkpoint is saved)", file=sys.stderr, flush=True)
            raise SkipScoring
        if not self.requested:
            self.requested = True
            print("\nunrolled: stopping at the end of this window: saving the last checkpoint, then scoring "
                  "validation; Ctrl-C again to skip the scoring", file=sys.stderr, flush=True)
        elif not self.skip_scoring:
            self.skip_scoring = True
            print("\nunrolled: the scoring will be skipped; the checkpoint is still saved", file=sys.stderr, flush=True)

    def score(self, scoring: Callable[[], float | None]) -> float | None:
        """`scoring()`, or None when Ctrl-C skipped it (before or while it ran)."""
        if self.skip_scoring:
            return None
        self._in_scoring = True
        try:
            return scoring()
        except SkipScoring:
            return None
        finally:
            self._in_scoring = False

    def __exit__(self, *exc):
        if self._old is not None:
            # After a Ctrl-C the run is ending: a late second one must not become a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.requested else self._old)


def _resolve_config(config: Config | None, overrides: dict) -> tuple[Config, ckpt_io.Checkpoint | None]:
    """The run's config: defaults < `config` < overrides; on resume, the saved one < limits given."""
    cfg = (config or Config()).updated(**overrides)
    if not cfg.train.resume:
        return cfg.check(), None
    run = Path(cfg.train.resume)
    if (run / "config.json").is_file() and not any((run / n).exists() for n in ("best", "last")) \
            and ckpt_io.set_aside(run / "last") is None:
        raise UserError(f"run {run} stopped before its first checkpoint, so there is nothing to resume; "
                        "start it again with another --out (or delete that folder first)")
    saved = ckpt_io.read(cfg.train.resume, prefer="last", full=True)
    base = Config.from_dict(saved.state["config"])
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
    base.train.resume = cfg.train.resume
    return base.check(), saved


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
    cfg, saved = _resolve_config(config, overrides)
    t = cfg.train
    device = pick_device(t.device)
    group = ddp.setup(device)  # a group of one unless started by torchrun
    device = ddp.device_for(group, device)
    say = print if t.progress and group.is_main else (lambda *a, **k: None)  # rank 0 speaks and writes

    # 1) data and vocabulary (the checkpoint's, when continuing or fine-tuning)
    init = None
    if saved is not None:
        vocab = Vocabulary.from_json(saved.state["vocab"])
    elif t.init_from:
        init = ckpt_io.read(t.init_from, prefer="best", full=False)
        vocab = Vocabulary.from_json(init.state["vocab"])
        cfg.model = Config.from_dict(init.state["config"]).model
    else:
        vocab = None
    data = prepare_data(cfg, vocab)
    if saved is not None and saved.state.get("data", {}).get("fingerprint") != data.fingerprint:
        raise UserError(f"the text of run {t.resume} changed since it started (different length or contents); "
                        "resume needs the same text, or start a new run with --init-from")
    streams = make_streams(data.train, t, group)
    val_batch = min(t.batch_size, 64)
    check_fits_in_memory(len(data.vocab), cfg.model)  # before the run directory is made

    # 2) run directory
    run_dir = Path(t.resume) if saved is not None else Path(t.out or f"runs/{datetime.now():%Y%m%d-%H%M%S}")
    if saved is None and group.is_main:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir} already holds files; pass --resume {run_dir} to continue that run, "
                            "or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)

    # 3) model and optimizer, seeded
    torch.manual_seed(t.seed)
    try:
        model = CharLM(data.vocab, cfg.model)
    except (RuntimeError, MemoryError) as e:  # the allocator refuses a model larger than memory
        if "alloc" not in str(e) and not isinstance(e, MemoryError):
            raise
        raise UserError(f"a model of --hidden-size {cfg.model.hidden_size} x --num-layers {cfg.model.num_layers} "
                        "does not fit in this machine's memory; use a smaller model") from None
    if init is not None:
        model.load_state_dict(init.model)
    model.to(device)
    optimizer = make_optimizer(model.parameters(), t)

    # 4) limits: steps from max_steps / max_epochs; the cosine horizon is fixed once, at the start
    per_epoch = len(streams)
    limits = [s for s in (t.max_steps, math.ceil(t.max_epochs * per_epoch) if t.max_epochs else None) if s]
    if not limits and not t.max_minutes:
        t.max_epochs = 1.0
        limits = [per_epoch]
    total_steps = min(limits) if limits else None
    if t.decay_steps is None and total_steps is not None and saved is None:
        t.decay_steps = total_steps

    # 5) the training state; a resumed run takes all of it from its last checkpoint
    st = {"step": 0, "epoch": 0, "window": 0, "best_val_bpc": None, "bad_evals": 0,
          "plateau_scale": 1.0, "plateau_best": None, "plateau_bad": 0, "elapsed_s": 0.0, "skipped": 0}
    carry = None
    if saved is not None:
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(ckpt_io.optimizer_from_flat(saved.optimizer, saved.state["optimizer"]))
        for key in st:
            st[key] = saved.state["loop"].get(key, st[key])  # keys added later keep their start value
        carry = ckpt_io.state_from_tensors(saved.tensors)
        if carry is not None:
            rows = (carry[0] if isinstance(carry, tuple) else carry).shape[1]
            if rows != t.batch_size * group.world_size:
                raise UserError(f"run {run_dir} carries {rows} streams; resume it with processes x --batch-size "
                                f"= {rows} (now {group.world_size} x {t.batch_size})")
            carry = ddp.rank_state(carry, group, t.batch_size)
            carry = tuple(s.to(device) for s in carry) if isinstance(carry, tuple) else carry.to(device)
        ckpt_io.restore_rng(saved.tensors)
        say(f"resuming {run_dir} at step {st['step']} (epoch {st['epoch']}, window {st['window']})")
    elif group.is_main:
        (run_dir / "config.json").write_text(_json(cfg.to_dict()))

    say(f"unrolled train: {len(data.vocab)} symbols, {len(data.train):,} train / {len(data.val):,} val / "
        f"{len(data.test):,} test characters, {model.num_parameters():,} parameters on {device}"
        + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""))
    if group.active:
        say(f"DistributedDataParallel ({group.backend}): {group.world_size} processes x batch {t.batch_size} = "
            f"effective batch {group.world_size * t.batch_size} streams; lr {t.lr:g} (not scaled: each update "
            "is the mean over all streams)")
    say(cfg.describe(everything=verbose))

    metrics_file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if group.is_main else None

    def log(row: dict) -> None:
        if metrics_file is None:
            return
        metrics_file.write(_json(row, indent=None) + "\n")
        metrics_file.flush()

    def progress_fraction(elapsed: float) -> float:
        fractions = []
        if t.decay_steps:
            fractions.append((st["step"] - t.warmup_steps) / max(1, t.decay_steps - t.warmup_steps))
        if t.max_minutes:
            fractions.append(elapsed / (60 * t.max_minutes))
        return max(fractions) if fractions else 0.0

    def validate(max_chars=None) -> float | None:
        nats, count = evaluate_tokens(model, data.val, val_batch, max(t.seq_len, 256) if t.bptt == "truncated"
                                      else streams.seq_len, max_chars)
        return nats / count / LN2 if count else None

    def save(name: str, metrics: dict) -> None:
        whole_carry = ddp.gather_state(carry, group)  # every rank's rows (a collective: all ranks call save)
        if not group.is_main:
            return
        opt_tensors, opt_meta = ckpt_io.optimizer_to_flat(optimizer)
        state = {
            "config": cfg.to_dict(), "vocab": data.vocab.to_json(),
            "step": st["step"], "epoch": st["epoch"], "window": st["window"], "elapsed_s": st["elapsed_s"],
            "best_val_bpc": st["best_val_bpc"], "metrics": metrics,
            "data": {"fingerprint": data.fingerprint, "train_chars": len(data.train),
                     "val_chars": len(data.val), "test_chars": len(data.test),
                     "windows_per_epoch": per_epoch, "position": st["window"] * streams.stride},
            "schedule": {"name": t.schedule, "lr": optimizer.param_groups[0]["lr"],
                         "plateau_scale": st["plateau_scale"]},
            "loop": dict(st), "optimizer": opt_meta,
        }
        tensors = {**ckpt_io.state_to_tensors(whole_carry), **ckpt_io.rng_to_tensors()}
        ckpt_io.save(run_dir / name, state, model.state_dict(), opt_tensors, tensors)

    def evaluate_and_save(final: bool) -> dict:
        """Validation (unless Ctrl-C skips it), plateau and early-stopping bookkeeping, then best/ and last/."""
        if final:
            say(f"scoring the validation split ({len(data.val):,} characters)...")
        val = interrupt.score(lambda: validate(None if final else t.eval_max_chars))
        row = {"step": st["step"], "epoch": st["epoch"], "split": "val", "time_s": st["elapsed_s"]}
        improved = False
        if val is not None:
            row.update(loss=val * LN2, bpc=val)
            log(row)
            improved = st["best_val_bpc"] is None or val < st["best_val_bpc"]
            if improved:
                st["best_val_bpc"], st["bad_evals"] = val, 0
            else:
                st["bad_evals"] += 1
            if t.schedule == "plateau":
                if st["plateau_best"] is None or val < st["plateau_best"]:
                    st["plateau_best"], st["plateau_bad"] = val, 0
                else:
                    st["plateau_bad"] += 1
                    if st["plateau_bad"] >= t.patience:
                        st["plateau_scale"] *= t.gamma
                        st["plateau_bad"] = 0
        metrics = {"val_bpc": val, "best_val_bpc": st["best_val_bpc"], "train_bpc": recent_bpc()}
        save("last", metrics)
        if improved:
            save("best", metrics)
        return metrics

    recent: list[float] = []

    def recent_bpc() -> float | None:
        return sum(recent) / len(recent) / LN2 if recent else None

    bar = None
    if t.progress and group.is_main:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_steps, initial=st["step"], unit="step", dynamic_ncols=True,
                   disable=None, file=sys.stderr)

    stopped, last_eval_step = None, (st["step"] if saved is not None else -1)
    t_start = time.perf_counter() - st["elapsed_s"]
    chars_done, t_rate = 0, time.perf_counter()
    skips_in_a_row = 0
    window_loss = WindowLoss(model, streams.stride)
    if group.active:  # gradients are averaged over ranks during backward
        window_loss = nn.parallel.DistributedDataParallel(
            window_loss, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    interrupt = _Interrupt()
    with interrupt:
        while True:
            # 6) stop conditions, checked only at a window edge so the saved state is whole
            st["elapsed_s"] = time.perf_counter() - t_start
            if total_steps is not None and st["step"] >= total_steps:
                stopped = "max_steps" if t.max_steps and st["step"] >= t.max_steps else "max_epochs"
            elif t.max_minutes and st["elapsed_s"] >= 60 * t.max_minutes:
                stopped = "max_minutes"
            elif t.early_stopping and st["bad_evals"] >= t.early_stopping:
                stopped = "early_stopping"
            elif interrupt.requested:
                stopped = "interrupted"
            if group.active:  # time limits and Ctrl-C differ between processes: rank 0 decides for all
                stopped = STOPS[ddp.agree(STOPS.index(stopped), group)]
            if stopped:
                break
            if st["window"] >= per_epoch:  # a new pass: the streams restart, so does the state
                st["epoch"] += 1
                st["window"] = 0
                carry = None
            w = streams.window(st["window"])
            x, y = w.x.to(device), w.y.to(device)  # (B, k2)

            lr = learning_rate(t, st["step"], progress_fraction(st["elapsed_s"]), st["plateau_scale"])
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            loss, carry = window_loss(x, y, carry)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip_gradients(model.parameters(), t)
            loss_value = loss.item()
            # Checked before the update, so NaN never reaches the weights or a checkpoint. Under DDP
            # the gradient norm is the same on every rank (gradients are averaged), so all agree.
            finite = math.isfinite(grad_norm) and (group.active or math.isfinite(loss_value))
            if finite:
                optimizer.step()
                skips_in_a_row = 0
            else:
                skips_in_a_row += 1
                kept = (f"{run_dir / 'last'} (step {last_eval_step}) is the last good checkpoint"
                        if last_eval_step >= 0 else "no checkpoint was written yet")
                if t.nonfinite == "stop" or skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
                    if metrics_file is not None:
                        metrics_file.close()
                    if bar is not None:
                        bar.close()
                    what = (f"{MAX_SKIPS_IN_A_ROW} updates in a row had" if t.nonfinite == "skip"
                            else "the update had")
                    raise UserError(f"{what} a non-finite loss or gradient (loss {loss_value}, gradient norm "
                                    f"{grad_norm}) at step {st['step'] + 1}, so training stopped without "
                                    f"applying it; {kept}; lower --lr (now {t.lr:g}) or --clip-value and "
                                    "start again, or resume with --nonfinite skip to skip such updates")
                st["skipped"] += 1
                log({"step": st["step"] + 1, "epoch": st["epoch"], "split": "train", "skipped": "nonfinite",
                     "loss": None if not math.isfinite(loss_value) else loss_value,
                     "grad_norm": None if not math.isfinite(grad_norm) else grad_norm})
                parts = carry if isinstance(carry, tuple) else (carry,)
                if carry is not None and not all(bool(torch.isfinite(s).all()) for s in parts):
                    carry = None  # a state that overflowed would poison every later window
            st["step"] += 1
            st["window"] += 1

            if finite:
                recent.append(loss_value)
                del recent[:-t.log_every]
            chars_done += x.shape[0] * group.world_size * min(streams.stride, x.shape[1])
            if finite and recent and st["step"] % t.log_every == 0:
                now = time.perf_counter()
                cps = chars_done / max(now - t_rate, 1e-9)
                chars_done, t_rate = 0, now
                log({"step": st["step"], "epoch": st["epoch"], "split": "train", "loss": loss_value,
                     "bpc": recent_bpc(), "lr": lr, "grad_norm": grad_norm, "chars_per_sec": cps,
                     "time_s": time.perf_counter() - t_start})
                if bar is not None:
                    post = {"loss": f"{loss_value:.3f}", "bpc": f"{recent_bpc():.3f}", "char/s": f"{cps:,.0f}"}
                    if t.max_minutes:
                        post["left"] = f"{max(0.0, t.max_minutes * 60 - (now - t_start)) / 60:.1f}min"
                    bar.set_postfix(post, refresh=False)
            if bar is not None:
                bar.update(1)
            if st["step"] % t.eval_every == 0:
                st["elapsed_s"] = time.perf_counter() - t_start
                evaluate_and_save(final=False)
                last_eval_step = st["step"]
            if callback is not None and callback({"step": st["step"], "loss": loss_value, "lr": lr,
                                                  "epoch": st["epoch"], "window": st["window"]}):
                interrupt.requested = True
        if bar is not None:
            bar.close()

        # 7) the end: validate and save (unless this very step was just saved), then test the best.
        # A Ctrl-C run saves `last` first: a second Ctrl-C may skip the scoring, never the save.
        st["elapsed_s"] = time.perf_counter() - t_start
        if last_eval_step != st["step"]:
            if stopped == "interrupted":
                save("last", {"val_bpc": None, "best_val_bpc": st["best_val_bpc"], "train_bpc": recent_bpc()})
                say(f"saved {run_dir / 'last'}; scoring {len(data.val):,} validation characters "
                    "(Ctrl-C to skip)...")
            metrics = evaluate_and_save(final=stopped != "interrupted")
        else:
            metrics = {"val_bpc": st["best_val_bpc"], "best_val_bpc": st["best_val_bpc"], "train_bpc": recent_bpc()}
        result = {"train_bpc": recent_bpc(), "val_bpc": metrics.get("val_bpc"), "best_val_bpc": st["best_val_bpc"],
                  "steps": st["step"], "minutes": st["elapsed_s"] / 60, "stopped": stopped}
        if stopped != "interrupted" and len(data.test) >= 2 and group.is_main and not interrupt.skip_scoring:
            best = run_dir / ("best" if (run_dir / "best").exists() else "last")
            say(f"scoring {best.name}/ on the test split ({len(data.test):,} characters)...")
            tested = ckpt_io.load(best, device=device)
            scored = interrupt.score(lambda: evaluate_tokens(tested, data.test, val_batch, max(t.seq_len, 256)))
            if scored is not None:
                result.update({f"test_{k}": v for k, v in summarize(*scored).items()})
                result["test_bpc"] = result.pop("test_bits_per_char")
                log({"step": st["step"], "epoch": st["epoch"], "split": "test", "loss": result["test_nats_per_char"],
                     "bpc": result["test_bpc"], "checkpoint": best.name, "time_s": st["elapsed_s"]})
        if metrics_file is not None:
            metrics_file.close()
        del window_loss  # DDP's reducer holds the process group: free it before the group goes
        ddp.teardown(group)
        model.eval()
        model.vocab = data.vocab
        _print_summary(say, run_dir, result)  # a late Ctrl-C still lands in our handler: said, not a traceback
    return RunResult(run_dir, model, st["step"], st["epoch"], stopped, result)


def _print_summary(say, run_dir: Path, r: dict) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    say(f"stopped ({r['stopped']}) after {r['steps']} steps, {r['minutes']:.1f} min: train {fmt(r['train_bpc'])} "
        f"val {fmt(r['val_bpc'])} best val {fmt(r['best_val_bpc'])} test {fmt(r.get('test_bpc'))} bits/char")
    say(f"run directory: {run_dir}")
    if r["stopped"] == "interrupted":  # said even when quiet: it is what to do next
        print(f"unrolled: stopped at step {r['steps']} and saved; continue with: unrolled train --resume {run_dir}",
              file=sys.stderr)


def _json(obj, indent: int | None = 1) -> str:
    import json
    return json.dumps(obj, indent=indent, default=float)
