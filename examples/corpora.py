"""The three text corpora the examples read, and the character vocabulary over them.

* shakespeare: ../shared/data/shakespeare/works.txt
* linux:       ../shared/data/linux/kernel.txt (C source of the Linux kernel)
* python:      the running interpreter's standard library source (*.py files in path order)

Each corpus is cut at `max_chars` and split by position: the first 80% to train, the next 10%
to validate, the last 10% to test (the split of Karpathy, Johnson and Fei-Fei 2015).
"""
from __future__ import annotations

import pathlib
import random
import sys
import sysconfig
import time

import torch

from unrolled.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
NAMES = ("shakespeare", "linux", "python")


def read_text(path: pathlib.Path, flag: str, max_chars: int | None = None) -> str:
    """A UTF-8 text file, or one sentence saying what is wrong and which flag to fix."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; pass the right file with {flag}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); give {flag} a UTF-8 file") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check {flag}") from None
    if not text:
        raise UserError(f"{path} is empty; give {flag} a file with text in it")
    return text[:max_chars] if max_chars else text


def python_files(stdlib: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The standard library's *.py files in path order, without installed third-party packages."""
    root = pathlib.Path(stdlib or sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def python_source(max_chars: int, stdlib: pathlib.Path | None = None) -> str:
    """The standard library source, files joined in path order, up to max_chars."""
    parts, total = [], 0
    for path in python_files(stdlib):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise UserError(f"no Python source found under {stdlib}; pass --stdlib DIR")
    return "".join(parts)[:max_chars]


def add_corpus_arguments(ap) -> None:
    ap.add_argument("--shakespeare", default=str(DATA / "shakespeare" / "works.txt"), help="Shakespeare text")
    ap.add_argument("--linux", default=str(DATA / "linux" / "kernel.txt"), help="Linux C source text")
    ap.add_argument("--stdlib", default=sysconfig.get_paths()["stdlib"], help="Python standard library dir")
    ap.add_argument("--max-chars", type=int, default=3_000_000, help="characters read from each corpus")


def load_corpora(args) -> dict[str, str]:
    return {
        "shakespeare": read_text(args.shakespeare, "--shakespeare", args.max_chars),
        "linux": read_text(args.linux, "--linux", args.max_chars),
        "python": python_source(args.max_chars, args.stdlib),
    }


def split(text: str) -> tuple[str, str, str]:
    """By position: 80% train, 10% validation, 10% test."""
    a, b = int(0.8 * len(text)), int(0.9 * len(text))
    return text[:a], text[a:b], text[b:]


class CharVocab:
    """Characters <-> ids; id 0 stands for any character not seen in training."""

    def __init__(self, texts):
        self.chars = ["\0"] + sorted(set("".join(texts)) - {"\0"})
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index.get(c, 0) for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def snippets(texts: dict[str, str], vocab: CharVocab, n: int, length: int, rng: random.Random):
    """n random snippets, each from a random corpus -> ids (n, length), labels (n,)."""
    labels = [rng.randrange(len(NAMES)) for _ in range(n)]
    rows = []
    for y in labels:
        text = texts[NAMES[y]]
        i = rng.randrange(len(text) - length)
        rows.append(vocab.encode(text[i:i + length]))
    return torch.stack(rows), torch.tensor(labels)


def train_test(args) -> tuple[dict[str, str], dict[str, str]]:
    """Every corpus of `load_corpora`, split by position -> (train texts, test texts) by name."""
    corpora = {name: split(text) for name, text in load_corpora(args).items()}
    return {name: parts[0] for name, parts in corpora.items()}, {name: parts[2] for name, parts in corpora.items()}


def add_fit_arguments(ap, steps: int, batch: int, max_minutes: float) -> None:
    """The flags `fit` and `start` read, with an example's own budget as defaults."""
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-minutes", type=float, default=max_minutes)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)


def start(args) -> random.Random:
    """Fix a run's threads and seeds -> the Python generator for its sampling."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return random.Random(args.seed)


def fit(model, next_batch, args, progress=lambda loss: f"loss {loss:.4f}") -> tuple[int, float]:
    """The examples' training loop: Adam with a one-cycle schedule (peak `args.lr`), gradient norm
    clipped at 1, for `args.steps` updates or `args.max_minutes`, whichever ends first.

    `next_batch()` returns the arguments of `model.loss`; `progress(loss)` is the text of the
    stderr line every 100 steps. Returns (updates taken, seconds).
    """
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    start = time.time()
    for step in range(args.steps):
        loss = model.loss(*next_batch())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1} {progress(loss.item())} {time.time() - start:.0f}s", file=sys.stderr)
        if time.time() - start > args.max_minutes * 60:
            break
    return step + 1, time.time() - start


def run(main) -> None:
    """Run an example's main; a user's mistake ends in one sentence and exit status 2."""
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
