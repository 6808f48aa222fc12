"""Many-to-one classification: which corpus does a 100-character snippet come from?

English prose, C or Python source: by default the Python documentation's topics, the
interpreter's C headers and the standard library source, which every Python has (corpora.py);
`--shakespeare FILE` and `--linux FILE` read those corpora instead. A ManyToOne (embedding ->
LSTM -> head on the elementwise max of its states over the steps, `--pool max`) reads the snippet
one character at a time and answers once. Training snippets are cut at random from the first 80%
of each corpus, held-out snippets from the last 10%. Prints one JSON line.

    python examples/classify_corpus.py
    python examples/classify_corpus.py --shakespeare works.txt --linux kernel.txt --test 1000
"""
from __future__ import annotations

import argparse
import json

import torch

import unrolled
from corpora import (CharVocab, add_corpus_arguments, add_fit_arguments, corpus_sources, fit, run, snippets, start,
                     train_test)


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
    args = ap.parse_args(argv)
    rng = start(args)

    train, test = train_test(args)
    names = list(train)
    vocab = CharVocab(train.values())
    model = unrolled.ManyToOne(len(vocab), len(names), args.hidden, args.cell, encoding="embedding",
                               embedding_dim=32, head="classify", max_length=args.length, pool=args.pool)
    steps, train_s = fit(model, lambda: snippets(train, vocab, args.batch, args.length, rng), args)
    model.eval()
    x, y = held_out(test, vocab, args.test, args.length)
    with torch.no_grad():
        pred = torch.cat([model.predict(x[i:i + 500]) for i in range(0, len(x), 500)])
    per_corpus = {name: round((pred[y == k] == k).float().mean().item(), 4) for k, name in enumerate(names)}
    print(json.dumps({
        "task": "corpus classification", "topology": "ManyToOne", "cell": args.cell, "hidden": args.hidden,
        "pool": args.pool, "snippet_chars": args.length, "steps": steps, "batch": args.batch,
        "train_seconds": round(train_s, 1), "test_snippets": len(y),
        "accuracy": round((pred == y).float().mean().item(), 4), "accuracy_per_corpus": per_corpus,
        "chance": round(1 / len(names), 4), "seed": args.seed,
        "corpora": corpus_sources(args), "train_chars": {name: len(train[name]) for name in names},
    }))
    return 0


if __name__ == "__main__":
    run(main)
