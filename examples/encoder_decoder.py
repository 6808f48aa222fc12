"""Many-to-many with different lengths: an encoder-decoder that rewrites text into text.

Two tasks, both generated here with held-out inputs the model never saw in training:

* dates:    "29 Nov 2026", "11/29/26", "November 29th, 2026", ... -> "2026-11-29"
* addition: "123+4567" -> "4690" (two numbers of up to 4 digits)

Prints one JSON line: exact-match accuracy on the held-out inputs with greedy decoding and with
beam search, plus the settings. `--reverse` reads each input backwards (Sutskever et al. 2014).
`--save DIR` keeps the model; `--load DIR --predict FILE` rewrites each line of FILE (beam
search of width --beam; see saved.py).

    python examples/encoder_decoder.py --task dates
    python examples/encoder_decoder.py --task addition --reverse      (about 20 minutes on a busy CPU)
    python examples/encoder_decoder.py --task dates --save dates
    python examples/encoder_decoder.py --load dates --predict my_dates.txt
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time

import torch

import unrolled
from corpora import run
from saved import add_save_arguments, train_or_load

PAD, BOS, EOS = "\0", "\1", "\2"  # ids 0, 1, 2 in every vocabulary here

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Each format writes a date the way people do; two-digit years mean 1970-2069.
DATE_FORMATS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",                       # 29 Nov 2026
    lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",                             # 11/29/26
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",                  # November 29th, 2026
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",                               # 29.11.2026
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",                           # 29 November 2026
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",                      # Nov 29, 2026
    lambda d: f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",      # Sunday, November 29, 2026
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",                               # 2026/11/29
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",                               # 11/29/2026
    lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",          # the 29th of November, 2026
    lambda d: f"{d.day}-{MONTHS[d.month - 1][:3].upper()}-{d.year % 100:02d}",      # 29-NOV-26
    lambda d: f"{DAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",  # Sun 29 Nov 2026
]


def date_pair(rng: random.Random) -> tuple[str, str]:
    day = datetime.date(1970, 1, 1) + datetime.timedelta(days=rng.randrange(36524))  # 1970-2069
    text = rng.choice(DATE_FORMATS)(day)
    return (text.lower() if rng.random() < 0.2 else text), day.isoformat()


def addition_pair(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(10 ** rng.randint(1, 4)), rng.randrange(10 ** rng.randint(1, 4))
    return f"{a}+{b}", str(a + b)


TASKS = {"dates": date_pair, "addition": addition_pair}
# (training pairs, updates) that reach the goals: addition needs far more of both than dates.
TASK_BUDGETS = {"dates": (20000, 1500), "addition": (400000, 8000)}


def make_split(task: str, n_train: int, n_test: int, seed: int):
    """Distinct pairs; no test input appears in training."""
    rng, seen, pairs = random.Random(seed), set(), []
    while len(pairs) < n_train + n_test:
        src, tgt = TASKS[task](rng)
        if src not in seen:
            seen.add(src)
            pairs.append((src, tgt))
    return pairs[:n_train], pairs[n_train:]


class Vocab:
    """Characters <-> ids, with PAD, BOS, EOS first."""

    def __init__(self, texts):
        self.chars = [PAD, BOS, EOS] + sorted(set("".join(texts)) - {PAD, BOS, EOS})
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    @classmethod
    def of(cls, chars: list[str]) -> "Vocab":
        """The vocabulary whose `chars` these are (PAD, BOS, EOS first), as a saved model lists them."""
        return cls(chars[3:])


def batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> padded (B, T) tensor and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out, lengths


def accuracy(model, pairs, src_vocab, tgt_vocab, decode: str, beam_width: int) -> float:
    model.eval()
    right = 0
    for i in range(0, len(pairs), 500):
        chunk = pairs[i:i + 500]
        x, xl = batch([src_vocab.encode(s) for s, _ in chunk])
        if decode == "greedy":
            outs = model.greedy(x, xl)
        else:
            outs = model.beam_search(x, xl, beam_width=beam_width)
        right += sum(tgt_vocab.decode(o) == t for o, (_, t) in zip(outs, chunk))
    model.train()
    return right / len(pairs)


def build(settings: dict):
    """The encoder-decoder the settings describe (before training, or to load saved weights into)."""
    return unrolled.EncoderDecoder(len(settings["source_chars"]), len(settings["target_chars"]), settings["hidden"],
                                   settings["cell"], num_layers=settings["layers"],
                                   bidirectional=settings["bidirectional"], bos_token=1, eos_token=2,
                                   reverse_source=settings["reverse"], max_target_length=settings["max_target_length"])


def predict(model, settings: dict, lines: list[str], beam_width: int) -> list[str | None]:
    """The rewrite of each line by beam search (None for an empty line)."""
    src_vocab, tgt_vocab = Vocab.of(settings["source_chars"]), Vocab.of(settings["target_chars"])
    for number, line in enumerate(lines, start=1):
        unseen = sorted(set(line) - set(src_vocab.chars[3:]))
        if unseen:
            raise unrolled.UserError(f"line {number} of the --predict file has {', '.join(map(repr, unseen))}, which "
                                     f"no {settings['task']} input in training had; remove or replace them")
    rows = [i for i, line in enumerate(lines) if line]
    out = [None] * len(lines)
    for k in range(0, len(rows), 500):
        chunk = rows[k:k + 500]
        x, xl = batch([src_vocab.encode(lines[i]) for i in chunk])
        for i, o in zip(chunk, model.beam_search(x, xl, beam_width=beam_width)):
            out[i] = tgt_vocab.decode(o)
    return out


def fit_pairs(model, src, tgt, args) -> tuple[int, list[float], float]:
    """Adam with a one-cycle schedule on random batches of pairs -> (updates, losses, seconds)."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    rng = random.Random(args.seed)
    start, losses = time.time(), []
    for step in range(args.steps):
        idx = [rng.randrange(len(src)) for _ in range(args.batch)]
        x, xl = batch([src[i] for i in idx])
        y, yl = batch([tgt[i] for i in idx])
        loss = model.loss(x, y, xl, yl, teacher_forcing=args.teacher_forcing)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(f"step {step + 1} loss {sum(losses[-250:]) / 250:.4f} {time.time() - start:.0f}s", file=sys.stderr)
        if time.time() - start > args.max_minutes * 60:
            break
    return step + 1, losses, time.time() - start


def train(args):
    """Train on the task's pairs, score the held-out ones -> (model, settings, result JSON)."""
    torch.manual_seed(args.seed)
    train_pairs, test = make_split(args.task, args.train, args.test, args.seed)
    src_vocab = Vocab([s for s, _ in train_pairs + test])
    tgt_vocab = Vocab([t for _, t in train_pairs + test])
    src = [src_vocab.encode(s) for s, _ in train_pairs]
    tgt = [tgt_vocab.encode(t + EOS) for _, t in train_pairs]
    settings = {"task": args.task, "source_chars": src_vocab.chars, "target_chars": tgt_vocab.chars,
                "hidden": args.hidden, "cell": args.cell, "layers": args.layers,
                "bidirectional": args.bidirectional, "reverse": args.reverse,
                "max_target_length": max(len(t) for t in tgt) + 2}
    model = build(settings)
    steps, losses, train_s = fit_pairs(model, src, tgt, args)
    with torch.no_grad():
        greedy = accuracy(model, test, src_vocab, tgt_vocab, "greedy", 1)
        beam = accuracy(model, test, src_vocab, tgt_vocab, "beam", args.beam)
    x, xl = batch([src_vocab.encode(s) for s, _ in test[:4]])
    examples = {s: tgt_vocab.decode(o) for (s, _), o in zip(test[:4], model.beam_search(x, xl, args.beam))}
    return model, settings, {
        "task": args.task, "topology": "EncoderDecoder", "cell": args.cell, "hidden": args.hidden,
        "layers": args.layers, "bidirectional": args.bidirectional, "reverse": args.reverse,
        "train_pairs": len(train_pairs), "test_pairs": len(test), "steps": steps, "batch": args.batch,
        "train_seconds": round(train_s, 1), "final_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
        "greedy_exact_match": round(greedy, 4), f"beam{args.beam}_exact_match": round(beam, 4),
        "seed": args.seed, "examples": examples,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="dates")
    ap.add_argument("--reverse", action="store_true", help="read each input backwards")
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--bidirectional", action="store_true", help="bidirectional encoder")
    ap.add_argument("--train", type=int, default=None, help="training pairs (default: dates 20000, addition 400000)")
    ap.add_argument("--test", type=int, default=2000, help="held-out pairs")
    ap.add_argument("--steps", type=int, default=None, help="updates (default: dates 1500, addition 8000)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--teacher-forcing", type=float, default=1.0, help="probability of feeding the true token")
    ap.add_argument("--beam", type=int, default=4, help="beam width (also of --predict)")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="stop training after this long")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    add_save_arguments(ap)
    args = ap.parse_args(argv)
    if args.beam < 1:
        raise unrolled.UserError(f"--beam must be at least 1, got {args.beam}")
    default_train, default_steps = TASK_BUDGETS[args.task]
    args.train = args.train or default_train
    args.steps = args.steps or default_steps
    torch.set_num_threads(args.threads)
    return train_or_load(args, "encoder_decoder", build, lambda m, s, lines: predict(m, s, lines, args.beam),
                         lambda: train(args))


if __name__ == "__main__":
    run(main)
