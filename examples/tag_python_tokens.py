"""Many-to-many, same length: tag every character of Python source with its token class.

The labels come from the standard library's own `tokenize` module: name, keyword, string,
comment, number, operator, whitespace (spaces, newlines, indentation between tokens). A
bidirectional ManyToMany (embedding -> bidirectional LSTM -> head at every step) reads windows of
source; a character's class depends on what follows as well as what came before (is this `"`
opening or closing a string?). The files of the standard library in path order are split: the
first 80% train, the last 10% test. The baseline gives each character its most frequent class in
training. Prints one JSON line with both per-character accuracies. `--save DIR` keeps the
model; `--load DIR --predict FILE` tags a file of Python, printing per line one letter per
character (LETTERS: `x = 10  # ten` -> `n.o.00..ccccc`; see saved.py).

    python examples/tag_python_tokens.py
    python examples/tag_python_tokens.py --save tagger
    python examples/tag_python_tokens.py --load tagger --predict my_script.py
"""
from __future__ import annotations

import argparse
import io
import json
import keyword
import tokenize

import torch

import unrolled
from corpora import CharVocab, add_fit_arguments, fit, python_files, run, start
from saved import add_save_arguments, train_or_load

CLASSES = ("whitespace", "name", "keyword", "string", "comment", "number", "operator")
LETTERS = {"whitespace": ".", "name": "n", "keyword": "k", "string": "s", "comment": "c", "number": "0",
           "operator": "o"}  # what --predict prints for each character
KIND = {tokenize.NAME: "name", tokenize.STRING: "string", tokenize.COMMENT: "comment",
        tokenize.NUMBER: "number", tokenize.OP: "operator", tokenize.ERRORTOKEN: "operator"}


def char_classes(source: str) -> list[int]:
    """The token class of every character of source (tokenize.TokenError/SyntaxError if it is not Python)."""
    starts, offset = [], 0
    for line in source.splitlines(keepends=True):
        starts.append(offset)
        offset += len(line)
    starts.append(offset)
    labels = [0] * len(source)  # whitespace unless a token covers it
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = KIND.get(tok.type)
        if kind is None or not tok.string.strip():
            continue
        if kind == "name" and keyword.iskeyword(tok.string):
            kind = "keyword"
        a = starts[tok.start[0] - 1] + tok.start[1]
        b = starts[tok.end[0] - 1] + tok.end[1]
        labels[a:b] = [CLASSES.index(kind)] * (b - a)
    return labels


def tagged_files(stdlib, max_chars: int, part: str) -> tuple[str, list[int]]:
    """Text and labels of the train (first 80%) or test (last 10%) files, up to max_chars."""
    files = python_files(stdlib)
    n = len(files)
    chosen = files[:int(0.8 * n)] if part == "train" else files[int(0.9 * n):]
    texts, labels, total = [], [], 0
    for path in chosen:
        try:
            source = path.read_text(encoding="utf-8")
            tags = char_classes(source)
        except (UnicodeDecodeError, OSError, SyntaxError, tokenize.TokenError, IndentationError):
            continue  # test fixtures that are deliberately broken
        texts.append(source)
        labels.extend(tags)
        total += len(source)
        if total >= max_chars:
            break
    if not texts:
        raise unrolled.UserError(f"no tokenizable Python files under {stdlib}; pass --stdlib DIR")
    return "".join(texts)[:max_chars], labels[:max_chars]


def predict_all(model, ids: torch.Tensor, window: int, margin: int) -> torch.Tensor:
    """Tag a long text with overlapping windows, keeping each window's middle (context both sides)."""
    n, stride = len(ids), window - 2 * margin
    pred = torch.empty(n, dtype=torch.long)
    starts = list(range(0, max(n - window, 0) + stride, stride))
    for i in range(0, len(starts), 64):
        group = [min(s, max(n - window, 0)) for s in starts[i:i + 64]]
        x = torch.stack([ids[s:s + window] for s in group])  # (B, W)
        with torch.no_grad():
            p = model.predict(x)  # (B, W)
        for s, row in zip(group, p):
            lo = 0 if s == 0 else margin
            hi = window if s + window >= n else window - margin
            pred[s + lo:s + hi] = row[lo:hi]
    return pred


def build(settings: dict):
    """The tagger the settings describe (before training, or to load saved weights into)."""
    return unrolled.ManyToMany(len(settings["chars"]), len(CLASSES), settings["hidden"], settings["cell"],
                               num_layers=settings["layers"], encoding="embedding", embedding_dim=32,
                               head="classify", bidirectional=True)


def predict(model, settings: dict, lines: list[str]) -> list[str]:
    """Per line, one letter per character giving its class (LETTERS). The lines are tagged as one
    text, so a character sees the lines around it (a line inside a triple-quoted string)."""
    text = "\n".join(lines)
    if not text:
        return [""] * len(lines)
    vocab = CharVocab(["".join(settings["chars"])])
    W = settings["window"]
    tags = "".join(LETTERS[CLASSES[k]] for k in predict_all(model, vocab.encode(text), 2 * W, W // 2).tolist())
    out, at = [], 0
    for line in lines:
        out.append(tags[at:at + len(line)])
        at += len(line) + 1  # the newline's own tag is not printed
    return out


def train(args):
    """Train on windows of the standard library, tag its held-out files -> (model, settings, result)."""
    rng = start(args)
    train_text, train_tags = tagged_files(args.stdlib, args.train_chars, "train")
    test_text, test_tags = tagged_files(args.stdlib, args.test_chars, "test")
    vocab = CharVocab([train_text])
    train_ids, train_y = vocab.encode(train_text), torch.tensor(train_tags)
    test_ids, test_y = vocab.encode(test_text), torch.tensor(test_tags)

    # Baseline: every character gets its most frequent class in training.
    counts = torch.zeros(len(vocab), len(CLASSES), dtype=torch.long)
    counts.index_put_((train_ids, train_y), torch.ones_like(train_ids), accumulate=True)
    baseline = (counts.argmax(1)[test_ids] == test_y).float().mean().item()

    W = args.window
    settings = {"chars": vocab.symbols, "hidden": args.hidden, "cell": args.cell, "layers": args.layers, "window": W}
    model = build(settings)

    def windows():
        starts = [rng.randrange(len(train_ids) - W) for _ in range(args.batch)]
        x = torch.stack([train_ids[s:s + W] for s in starts])  # (B, W)
        y = torch.stack([train_y[s:s + W] for s in starts])  # (B, W)
        return x, y

    steps, train_s = fit(model, windows, args)
    model.eval()
    pred = predict_all(model, test_ids, 2 * W, W // 2)
    right = pred == test_y
    per_class = {c: round(right[test_y == k].float().mean().item(), 4) for k, c in enumerate(CLASSES)
                 if (test_y == k).any()}
    return model, settings, {
        "task": "Python token tagging", "topology": "ManyToMany", "cell": args.cell, "hidden": args.hidden,
        "layers": args.layers, "bidirectional": True, "window": W, "steps": steps, "batch": args.batch,
        "train_seconds": round(train_s, 1), "train_chars": len(train_ids), "test_chars": len(test_ids),
        "accuracy": round(right.float().mean().item(), 4), "baseline_most_frequent_class": round(baseline, 4),
        "accuracy_per_class": per_class, "seed": args.seed,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stdlib", default=None, help="Python standard library dir (default: this interpreter's)")
    ap.add_argument("--train-chars", type=int, default=2_000_000)
    ap.add_argument("--test-chars", type=int, default=200_000)
    ap.add_argument("--window", type=int, default=200, help="characters per training window")
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--layers", type=int, default=1)
    add_fit_arguments(ap, steps=1500, batch=32, max_minutes=5.0)
    add_save_arguments(ap)
    args = ap.parse_args(argv)
    return train_or_load(args, "tag_python_tokens", build, predict, lambda: train(args))


if __name__ == "__main__":
    run(main)
