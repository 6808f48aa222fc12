"""The three text corpora the examples read, and the character vocabulary over them.

By default all three come with the Python that runs the example, so every machine has them:

* english: the Python documentation's reference text that `help()` shows (the values of
           `pydoc_data/topics.py` in the standard library, joined in file order: about 465,000
           characters of English prose with some code examples)
* c:       the interpreter's C headers (every *.h under `sysconfig.get_path("include")`, in path
           order; `--include DIR` for others)
* python:  the standard library source (*.py files in path order, `pydoc_data` left out)

`--shakespeare FILE` reads a text file instead of the English corpus (its label is then
`shakespeare`), `--linux FILE` a C source file instead of the headers (label `linux`): the
bigger corpora some results in docs/topologies.md were measured on, for users who have them.

Each corpus is cut at `max_chars` and split by position: the first 80% to train, the next 10%
to validate, the last 10% to test (the split of Karpathy, Johnson and Fei-Fei 2015).
"""
from __future__ import annotations

import ast
import pathlib
import random
import sys
import sysconfig
import time

import torch

from unrolled.charlm.text import Vocabulary, split_bounds
from unrolled.errors import UserError

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data"  # the small data committed with the examples (see data/README.md)


def read_text(path: pathlib.Path, flag: str, max_chars: int | None = None) -> str:
    """A UTF-8 text file, or one sentence saying what is wrong and which flag to fix."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; pass the right file with {flag}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give {flag} a text file") from None
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
    """The standard library source, files joined in path order, up to max_chars.

    `pydoc_data` (the English corpus, stored as one Python dict of strings) is left out, so the
    two corpora never share text."""
    parts, total = [], 0
    for path in python_files(stdlib):
        if "pydoc_data" in path.parts:
            continue
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


def python_docs(max_chars: int, stdlib: pathlib.Path | None = None) -> str:
    """English prose: the reference topics of the Python documentation that `help()` shows, read
    (not imported) from the standard library's pydoc_data/topics.py, joined in file order."""
    path = pathlib.Path(stdlib or sysconfig.get_paths()["stdlib"]) / "pydoc_data" / "topics.py"
    hint = "pass --stdlib DIR, or an English text file with --shakespeare FILE"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        topics = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                      and any(getattr(t, "id", None) == "topics" for t in node.targets))
        text = "\n".join(v for v in topics.values() if isinstance(v, str))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, StopIteration, AttributeError):
        raise UserError(f"no documentation topics found at {path}; {hint}") from None
    if not text:
        raise UserError(f"{path} holds no text; {hint}")
    return text[:max_chars]


def c_headers(max_chars: int, include: pathlib.Path | None = None) -> str:
    """C: the interpreter's header files (*.h under include, every folder), joined in path order."""
    root = pathlib.Path(include or sysconfig.get_path("include"))
    parts, total = [], 0
    for path in sorted(root.rglob("*.h")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise UserError(f"no C headers (*.h) found under {root}; pass --include DIR (where Python.h is), "
                        "or a C source file with --linux FILE")
    return "".join(parts)[:max_chars]


def add_corpus_arguments(ap) -> None:
    ap.add_argument("--shakespeare", default=None, metavar="FILE",
                    help="an English text file to read instead of the Python documentation topics")
    ap.add_argument("--linux", default=None, metavar="FILE",
                    help="a C source file to read instead of the Python C headers")
    ap.add_argument("--stdlib", default=sysconfig.get_paths()["stdlib"], metavar="DIR",
                    help="Python standard library dir (the Python and, by default, the English corpus)")
    ap.add_argument("--include", default=sysconfig.get_path("include"), metavar="DIR",
                    help="C header dir (the C corpus unless --linux is given)")
    ap.add_argument("--max-chars", type=int, default=3_000_000, help="characters read from each corpus")


def corpus_names(args) -> tuple[str, str, str]:
    """The three labels, in order: English, C, Python (named after the files read)."""
    return ("shakespeare" if args.shakespeare else "english", "linux" if args.linux else "c", "python")


def corpus_sources(args) -> dict[str, str]:
    """Label -> what was read, for the result JSON (a file's name, not its folder)."""
    english, c, python = corpus_names(args)
    return {english: pathlib.Path(args.shakespeare).name if args.shakespeare else "Python documentation topics",
            c: pathlib.Path(args.linux).name if args.linux else "Python C headers",
            python: "Python standard library source"}


def load_corpora(args) -> dict[str, str]:
    """Label -> text, in the order of `corpus_names`."""
    english, c, python = corpus_names(args)
    return {
        english: (read_text(args.shakespeare, "--shakespeare", args.max_chars) if args.shakespeare
                  else python_docs(args.max_chars, args.stdlib)),
        c: read_text(args.linux, "--linux", args.max_chars) if args.linux else c_headers(args.max_chars, args.include),
        python: python_source(args.max_chars, args.stdlib),
    }


def split(text: str) -> tuple[str, str, str]:
    """By position: 80% train, 10% validation, 10% test (the split `unrolled train` makes)."""
    a, b = split_bounds(len(text))
    return text[:a], text[a:b], text[b:]


class CharVocab(Vocabulary):
    """unrolled's character vocabulary over the training texts, plus "\0" (id 0), which stands
    for any character not seen in training; encode gives a tensor of ids."""

    def __init__(self, texts):
        super().__init__(set("".join(texts)) | {"\0"})

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(super().encode(text, unknown="replace", replacement="\0"), dtype=torch.long)


def snippets(texts: dict[str, str], vocab: CharVocab, n: int, length: int, rng: random.Random):
    """n random snippets, each from a random corpus -> ids (n, length), labels (n,): the index of
    its corpus in `texts` (label -> text)."""
    names = list(texts)
    labels = [rng.randrange(len(names)) for _ in range(n)]
    rows = []
    for y in labels:
        text = texts[names[y]]
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
