"""Many-to-one classification: which corpus does a 100-character snippet come from?

English prose, C or Python source: by default the Python documentation's topics, the
interpreter's C headers and the standard library source, which every Python has (corpora.py);
`--shakespeare FILE` and `--linux FILE` read those corpora instead. A ManyToOne (embedding ->
LSTM -> head on the elementwise max of its states over the steps, `--pool max`) reads the snippet
one character at a time and answers once. Training snippets are cut at random from the first 80%
of each corpus, held-out snippets from the last 10%. Prints one JSON line. `--save DIR` keeps
the model; `--load DIR --predict FILE` prints the label of each line of FILE (see saved.py).

    python examples/classify_corpus.py
    python examples/classify_corpus.py --shakespeare works.txt --linux kernel.txt --test 1000
    python examples/classify_corpus.py --save classifier
    python examples/classify_corpus.py --load classifier --predict snippets.txt
"""
from __future__ import annotations

import argparse
import json

import torch

import unrolled
from corpora import (CharVocab, add_corpus_arguments, add_fit_arguments, corpus_sources, fit, run, snippets, start,
                     train_test)
from saved import add_save_arguments, train_or_load


def held_out(texts: dict[str, str], vocab: CharVocab, per_corpus: int, length: int):
    """Non-overlapping snippets evenly spread over each test split -> ids, labels."""
    rows, labels = [], []
    for y, name in enumerate(texts):
        text = texts[name]
        stride = (len(text) - length) // per_corpus
        if stride < length:
            raise unrolled.UserError(f"the {name} test split is too short for {per_corpus} snippets of "
                                     f"{length} characters; raise --max-chars or lower --test")
        for k in range(per_corpus):
            rows.append(vocab.encode(text[k * stride:k * stride + length]))
            labels.append(y)
    return torch.stack(rows), torch.tensor(labels)


def build(settings: dict):
    """The classifier the settings describe (before training, or to load saved weights into)."""
    return unrolled.ManyToOne(len(settings["chars"]), len(settings["labels"]), settings["hidden"], settings["cell"],
                              encoding="embedding", embedding_dim=32, head="classify", pool=settings["pool"])


def predict(model, settings: dict, lines: list[str], batch: int = 256) -> list[str | None]:
    """The corpus label of each line (any length: the model has no part tied to a position); None
    for an empty line."""
    vocab = CharVocab(["".join(settings["chars"])])
    labels = [None] * len(lines)
    rows = [i for i, line in enumerate(lines) if line]
    for k in range(0, len(rows), batch):
        chunk = rows[k:k + batch]
        ids = [vocab.encode(lines[i]) for i in chunk]
        x = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)  # (B, T), padded with id 0
        pred = model.predict(x, torch.tensor([len(r) for r in ids]))  # (B,)
        for i, y in zip(chunk, pred.tolist()):
            labels[i] = settings["labels"][y]
    return labels


def train(args):
    """Train on random snippets, score the held-out ones -> (model, settings, result JSON)."""
    rng = start(args)
    train_texts, test = train_test(args)
    names = list(train_texts)
    vocab = CharVocab(train_texts.values())
    settings = {"chars": vocab.symbols, "labels": names, "hidden": args.hidden, "cell": args.cell,
                "pool": args.pool, "snippet_chars": args.length}
    model = build(settings)
    steps, train_s = fit(model, lambda: snippets(train_texts, vocab, args.batch, args.length, rng), args)
    model.eval()
    x, y = held_out(test, vocab, args.test, args.length)
    with torch.no_grad():
        pred = torch.cat([model.predict(x[i:i + 500]) for i in range(0, len(x), 500)])
    per_corpus = {name: round((pred[y == k] == k).float().mean().item(), 4) for k, name in enumerate(names)}
    return model, settings, {
        "task": "corpus classification", "topology": "ManyToOne", "cell": args.cell, "hidden": args.hidden,
        "pool": args.pool, "snippet_chars": args.length, "steps": steps, "batch": args.batch,
        "train_seconds": round(train_s, 1), "test_snippets": len(y),
        "accuracy": round((pred == y).float().mean().item(), 4), "accuracy_per_corpus": per_corpus,
        "chance": round(1 / len(names), 4), "seed": args.seed,
        "corpora": corpus_sources(args), "train_chars": {name: len(train_texts[name]) for name in names},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_arguments(ap)
    ap.add_argument("--length", type=int, default=100, help="characters per snippet")
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--pool", choices=["last", "mean", "max"], default="max",
                    help="answer from the last state, or the mean or max over all steps")
    ap.add_argument("--test", type=int, default=400, help="held-out snippets per corpus (non-overlapping)")
    add_fit_arguments(ap, steps=800, batch=64, max_minutes=10.0)
    add_save_arguments(ap)
    args = ap.parse_args(argv)
    return train_or_load(args, "classify_corpus", build, predict, lambda: train(args))


if __name__ == "__main__":
    run(main)
