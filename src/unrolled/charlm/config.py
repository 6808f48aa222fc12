"""Configuration of a character language model run: dataclasses with defaults, a TOML file, checks.

Three parts, one dataclass each: `DataConfig` (what text), `ModelConfig` (what network),
`TrainConfig` (how to train). `Config` holds the three. Every field is also a flag of
`unrolled train` (underscores become dashes), and a TOML file may set any of them, either at the
top level or under a `[data]`, `[model]` or `[train]` table:

    cell = "gru"             # top level: any field of any part
    [train]
    lr = 1e-3

Precedence: the defaults here, then the config file, then the flags given. The resolved config
is printed at the start of a run and saved in every checkpoint.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from unrolled.charlm.text import UNKNOWN_POLICIES
from unrolled.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")  # the last two: unrolled.minimal
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "adagrad")
SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")
CLIPS = ("norm", "value", "none")
BPTT = ("truncated", "full")
UNKNOWN = UNKNOWN_POLICIES  # one list with the vocabulary that applies it
NONFINITE = ("stop", "skip")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer


@dataclass
class DataConfig:
    paths: list[str] = field(default_factory=list)  # text files, directories or globs; empty = the default corpus
    byte_level: bool = False  # model bytes instead of characters (for text that is not UTF-8)
    val_fraction: float = 0.1  # the split is by position: train, then validation, then test
    test_fraction: float = 0.1  # (train gets the rest: 0.8 by default)
    unknown: str = "error"  # with --init-from: characters outside the old vocabulary: error, skip them, or replace them
    replacement: str | None = None  # with --unknown replace: the symbol; None is " " (or the first symbol without a space)


@dataclass
class ModelConfig:
    cell: str = "lstm"  # rnn, lstm, gru, or the scan-trained mingru, minlstm (Feng et al. 2024)
    hidden_size: int = 512  # H: width of every recurrent layer
    num_layers: int = 1  # L: stacked recurrent layers (one of 512 measured best at 10 and 60 CPU minutes, see docs/training.md)
    dropout: float = 0.0  # dropout between recurrent layers (never after the last, as torch.nn)
    embedding_size: int = 64  # input encoding: a learned embedding this wide, or 0 for one-hot
    forget_bias: float = 0.0  # LSTM and MinLSTM only: initial forget-gate bias; 1 makes the cell start by remembering (Gers et al. 2000)


@dataclass
class TrainConfig:
    batch_size: int = 32  # B parallel contiguous streams
    seq_len: int = 128  # k2: the window backward runs over (truncated BPTT)
    stride: int | None = None  # k1: how far each window moves (<= seq_len); None = seq_len (k1 = k2)
    bptt: str = "truncated"  # truncated, or full: one window is the whole stream (short texts)
    optimizer: str = "adam"  # adam, adamw, rmsprop, sgd or adagrad
    lr: float = 1e-2  # peak learning rate (measured best of 2e-3..1e-2 at short budgets, see docs/training.md)
    weight_decay: float = 0.0  # L2 (decoupled for adamw)
    momentum: float = 0.0  # sgd and rmsprop only
    schedule: str = "cosine"  # constant, step, exponential, cosine (with warmup) or plateau
    warmup_steps: int = 20  # linear warmup from 0 to lr (every schedule)
    decay_steps: int | None = None  # cosine: steps from peak to min_lr; None = the run's max steps
    min_lr_ratio: float = 0.1  # cosine: the floor, as a fraction of lr
    gamma: float = 0.5  # step: factor every step_size steps; exponential: factor per 1000 steps; plateau: factor
    step_size: int = 1000  # step: steps between decays
    patience: int = 2  # plateau: validations without improvement before the lr is multiplied by gamma
    clip: str = "norm"  # norm (rescale g by clip_value / its norm when larger), value (clamp), or none
    clip_value: float = 1.0  # the threshold for clip
    nonfinite: str = "stop"  # a NaN or infinite loss or gradient: stop (the update is not applied; the last checkpoint is kept) or skip that update
    max_steps: int | None = None  # stop after this many updates
    max_epochs: float | None = None  # stop after this many passes over the training text
    max_minutes: float | None = None  # stop after this much wall-clock time
    eval_every: int = 500  # validate (and save best/last) every this many steps, and at the end
    eval_max_chars: int | None = None  # cap on validation characters per check (None = all; the end uses all)
    early_stopping: int = 0  # stop after this many validations without improvement (0 = never)
    log_every: int = 10  # write a train row to metrics.jsonl every this many steps
    seed: int = 1337  # seeds initialisation, dropout and everything random
    device: str = "auto"  # auto (cuda when there is one), cpu, cuda, cuda:1, ...
    out: str | None = None  # run directory; None = runs/<date-time>
    resume: str | None = None  # a run directory to continue exactly where it stopped
    init_from: str | None = None  # a checkpoint to fine-tune: its weights and vocabulary, a fresh optimizer
    progress: bool = True  # show a progress bar on stderr


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> "Config":
        cfg = cls()
        for part in ("data", "model", "train"):
            for key, value in (obj.get(part) or {}).items():
                setattr(getattr(cfg, part), key, value)
        return cfg

    def updated(self, **overrides) -> "Config":
        """A copy with fields set by name, whichever part they belong to (None values ignored)."""
        cfg = Config(replace(self.data), replace(self.model), replace(self.train))
        for key, value in overrides.items():
            if value is None:
                continue
            part = part_of(key)
            if part is None:
                raise TypeError(f"no configuration field named {key!r}")
            setattr(getattr(cfg, part), key, value)
        return cfg

    def check(self) -> "Config":
        check(self)
        return self

    def describe(self, everything: bool = False) -> str:
        """The settings, for printing at the start of a run: one line naming those that differ
        from the defaults, or with `everything` every setting as TOML-like lines."""
        defaults = Config()
        shown = lambda key, value: ("the default corpus (the Python standard library)"  # noqa: E731
                                    if key == "paths" and not value else repr(value))
        if everything:
            lines = []
            for part in ("data", "model", "train"):
                lines.append(f"[{part}]")
                lines += [f"  {key} = {shown(key, value)}" for key, value in asdict(getattr(self, part)).items()]
            return "\n".join(lines)
        changed = [f"{key} = {shown(key, value)}" for part in ("data", "model", "train")
                   for key, value in asdict(getattr(self, part)).items()
                   if key not in ("progress", "resume") and value != getattr(getattr(defaults, part), key)]
        corpus = [shown("paths", self.data.paths)] if not self.data.paths else []
        return "settings: " + ", ".join(corpus + changed) + "; everything else at its default (--verbose lists all)"


PARTS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def part_of(key: str) -> str | None:
    for part, cls in PARTS.items():
        if key in {f.name for f in fields(cls)}:
            return part
    return None


def field_names() -> dict[str, str]:
    """Every configurable field -> the part it belongs to."""
    return {f.name: part for part, cls in PARTS.items() for f in fields(cls)}


def load_toml(path: str | Path) -> dict:
    """A TOML config file -> {field: value}, flat; unknown keys are a UserError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; check the --config path") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML ({e}); fix it") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    flat: dict = {}
    for key, value in raw.items():
        if key in PARTS and isinstance(value, dict):
            for sub, v in value.items():
                if part_of(sub) != key:
                    raise UserError(f"config file {path}: [{key}] has no setting {sub!r}; see `unrolled train --help`")
                flat[sub] = v
        elif part_of(key):
            flat[key] = value
        else:
            raise UserError(f"config file {path}: unknown setting {key!r}; see `unrolled train --help`")
    return flat


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{_flag(name)} must be a positive integer, got {value!r}")


def _number(name, value, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False):
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hi_s = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        where = f" in {lo_s}, {hi_s}" if lo is not None and hi is not None else \
            (f" greater than {lo:g}" if lo_open else f" at least {lo:g}") if lo is not None else ""
        raise UserError(f"{_flag(name)} must be a finite number{where}, got {value!r}")


def _choice(name, value, choices):
    if value not in choices:
        raise UserError(f"{_flag(name)} must be one of {', '.join(choices)}, got {value!r}")


def check(cfg: Config) -> None:
    """Every field in range, or a UserError naming the flag."""
    d, m, t = cfg.data, cfg.model, cfg.train
    _number("val_fraction", d.val_fraction, 0, 1, hi_open=True)
    _number("test_fraction", d.test_fraction, 0, 1, hi_open=True)
    if d.val_fraction + d.test_fraction >= 1:
        raise UserError("--val-fraction plus --test-fraction must leave some text to train on (sum below 1)")
    _choice("unknown", d.unknown, UNKNOWN)
    _choice("cell", m.cell, CELLS)
    _positive_int("hidden_size", m.hidden_size)
    _positive_int("num_layers", m.num_layers)
    _number("dropout", m.dropout, 0, 1, hi_open=True)
    if not isinstance(m.embedding_size, int) or isinstance(m.embedding_size, bool) or m.embedding_size < 0:
        raise UserError(f"--embedding-size must be a positive integer, or 0 for one-hot inputs, got {m.embedding_size!r}")
    _number("forget_bias", m.forget_bias, -1000, 1000)  # past +-1000 a sigmoid is 0 or 1 (float32 holds it)
    _positive_int("batch_size", t.batch_size)
    _positive_int("seq_len", t.seq_len)
    _positive_int("stride", t.stride, allow_none=True)
    if t.stride is not None and t.stride > t.seq_len:
        raise UserError(f"--stride ({t.stride}) must not exceed --seq-len ({t.seq_len})")
    _choice("bptt", t.bptt, BPTT)
    _choice("optimizer", t.optimizer, OPTIMIZERS)
    _number("lr", t.lr, 0, lo_open=True)
    _number("weight_decay", t.weight_decay, 0)
    _number("momentum", t.momentum, 0, 1, hi_open=True)
    _choice("schedule", t.schedule, SCHEDULES)
    if not isinstance(t.warmup_steps, int) or isinstance(t.warmup_steps, bool) or t.warmup_steps < 0:
        raise UserError(f"--warmup-steps must be a whole number, 0 or more, got {t.warmup_steps!r}")
    _positive_int("decay_steps", t.decay_steps, allow_none=True)
    _number("min_lr_ratio", t.min_lr_ratio, 0, 1)
    _number("gamma", t.gamma, 0, 1, lo_open=True)
    _positive_int("step_size", t.step_size)
    _positive_int("patience", t.patience)
    _choice("clip", t.clip, CLIPS)
    _number("clip_value", t.clip_value, 0, lo_open=True)
    _positive_int("max_steps", t.max_steps, allow_none=True)
    _number("max_epochs", t.max_epochs, 0, lo_open=True, allow_none=True)
    _number("max_minutes", t.max_minutes, 0, lo_open=True, allow_none=True)
    _positive_int("eval_every", t.eval_every)
    _positive_int("eval_max_chars", t.eval_max_chars, allow_none=True)
    if not isinstance(t.early_stopping, int) or isinstance(t.early_stopping, bool) or t.early_stopping < 0:
        raise UserError(f"--early-stopping must be a whole number of validations, or 0 for never, got {t.early_stopping!r}")
    _positive_int("log_every", t.log_every)
    if not isinstance(t.seed, int) or isinstance(t.seed, bool) or not 0 <= t.seed <= MAX_SEED:
        raise UserError(f"--seed must be a whole number from 0 to 2**63 - 1, got {t.seed!r}")
    _choice("nonfinite", t.nonfinite, NONFINITE)
    if t.resume and t.init_from:
        raise UserError("--resume and --init-from exclude each other: resume continues a run, "
                        "init-from starts a new one from a checkpoint")


def field_help() -> dict[str, str]:
    """Each field's comment in this file, which is its documentation: the flags' --help text
    is read from here, so the two cannot drift apart."""
    import inspect
    import re

    pattern = re.compile(r"^\s+(\w+): [^=]+= .*?  # (.*)$")
    found = {}
    for cls in PARTS.values():
        for line in inspect.getsource(cls).splitlines():
            m = pattern.match(line)
            if m:
                found[m.group(1)] = m.group(2)
    return found
