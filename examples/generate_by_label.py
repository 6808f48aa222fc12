"""One-to-many: from a corpus label alone, write text in that corpus's style.

A OneToMany takes the label (english, c or python: by default the Python documentation's topics,
the interpreter's C headers and the standard library source, which every Python has; shakespeare
and linux with `--shakespeare FILE` and `--linux FILE`, see corpora.py), sets the initial state
from it and feeds it at every step beside the previous character; the character it emits is fed
back as the next input. It is trained on 100-character pieces of the first 80% of each corpus,
each piece started from its label alone. On the last 10% of each corpus it reports bits per character under
the right label and under each wrong one (a model that uses its label scores clearly better under
the right one), and prints a sample per label. Prints one JSON line. `--save DIR` keeps the
model; `--load DIR --predict FILE` writes a sample for the label on each line of FILE (see saved.py).

    python examples/generate_by_label.py
    python examples/generate_by_label.py --shakespeare works.txt --linux kernel.txt
    python examples/generate_by_label.py --save writer
    python examples/generate_by_label.py --load writer --predict labels.txt --sample-chars 200
"""
from __future__ import annotations

import argparse
import json
import math

import torch

import unrolled
from corpora import (CharVocab, add_corpus_arguments, add_fit_arguments, corpus_names, corpus_sources, fit, run,
                     snippets, start, train_test)
from saved import add_save_arguments, train_or_load


def bits_per_char(model, text: str, vocab: CharVocab, label: int, length: int, count: int) -> float:
    """Mean -log2 p(next char) over `count` pieces spread evenly over text, each read under label."""
    stride = (len(text) - length) // count
    rows = torch.stack([vocab.encode(text[k * stride:k * stride + length]) for k in range(count)])
    with torch.no_grad():
        nats = model.loss(torch.full((count,), label), rows).item()
    return nats / math.log(2)


def build(settings: dict):
    """The generator the settings describe (before training, or to load saved weights into)."""
    return unrolled.OneToMany(len(settings["labels"]), len(settings["chars"]), settings["hidden"], settings["cell"],
                              input="class", embedding_dim=32, input_dim=16)


def predict(model, settings: dict, lines: list[str], args) -> list[str | None]:
    """A sample of --sample-chars characters for the label on each line (None for an empty line),
    drawn in turn from one generator seeded with --seed."""
    labels, vocab = settings["labels"], CharVocab(["".join(settings["chars"])])
    wanted = []
    for number, line in enumerate(lines, start=1):
        label = line.strip()
        if label and label not in labels:
            raise unrolled.UserError(f"line {number} of the --predict file is {label!r}; each line must be a "
                                     f"label, one of {', '.join(labels)}")
        wanted.append(label or None)
    gen = torch.Generator().manual_seed(args.seed)
    return [None if label is None else vocab.decode(model.generate(
        torch.tensor([labels.index(label)]), args.sample_chars, args.temperature, generator=gen)[0].tolist())
        for label in wanted]


def train(args, names):
    """Train on pieces of each corpus, score them under every label -> (model, settings, result)."""
    rng = start(args)
    train_texts, test = train_test(args)
    vocab = CharVocab(train_texts.values())
    settings = {"chars": vocab.symbols, "labels": list(names), "hidden": args.hidden, "cell": args.cell}
    model = build(settings)
    steps, train_s = fit(model, lambda: snippets(train_texts, vocab, args.batch, args.length, rng)[::-1], args,
                         progress=lambda loss: f"bpc {loss / math.log(2):.3f}")
    model.eval()
    bpc = {text_name: {label_name: round(bits_per_char(model, test[text_name], vocab, k, args.length,
                                                        args.test_pieces), 3)
                       for k, label_name in enumerate(names)}
           for text_name in names}
    margin = {name: round(min(v for k, v in bpc[name].items() if k != name) - bpc[name][name], 3) for name in names}
    gen = torch.Generator().manual_seed(args.seed)
    samples = {}
    for name in args.sample_label or names:
        out = model.generate(torch.tensor([names.index(name)]), args.sample_chars, args.temperature, generator=gen)
        samples[name] = vocab.decode(out[0].tolist())
    return model, settings, {
        "task": "label-conditioned generation", "topology": "OneToMany", "cell": args.cell,
        "hidden": args.hidden, "steps": steps, "batch": args.batch, "piece_chars": args.length,
        "train_seconds": round(train_s, 1),
        "test_bpc_text_under_label": bpc, "right_label_margin_bpc": margin,
        "right_label_best_for_every_corpus": all(m > 0 for m in margin.values()),
        "temperature": args.temperature, "samples": samples, "seed": args.seed, "corpora": corpus_sources(args),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_arguments(ap)
    ap.add_argument("--length", type=int, default=100, help="characters per training piece")
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="gru")
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--test-pieces", type=int, default=100, help="held-out pieces per corpus")
    ap.add_argument("--sample-chars", type=int, default=300, help="characters per sample (also with --predict)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--sample-label", action="append", default=None,
                    help="label to sample from (repeatable; default all three: english or shakespeare, "
                         "c or linux, python)")
    add_fit_arguments(ap, steps=1000, batch=32, max_minutes=5.0)
    add_save_arguments(ap)
    args = ap.parse_args(argv)
    if args.sample_chars < 1 or args.temperature <= 0:
        raise unrolled.UserError("--sample-chars must be at least 1 and --temperature positive")
    names = corpus_names(args)
    for name in args.sample_label or []:
        if name not in names:
            raise unrolled.UserError(f"unknown label {name!r} for --sample-label; choose one of {', '.join(names)}")
    return train_or_load(args, "generate_by_label", build, lambda m, s, lines: predict(m, s, lines, args),
                         lambda: train(args, names))


if __name__ == "__main__":
    run(main)
