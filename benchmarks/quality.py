"""Quality at a fixed wall-clock budget: unrolled's training defaults against the plain PyTorch loop.

For each corpus (Shakespeare, the Linux kernel), split by position 80/10/10, two contenders train
a model of the same size for the same wall-clock budget, interleaved in one run (the order
alternates between corpora), then both are scored on the test split by the same evaluator
(`unrolled.evaluate.evaluate_tokens` on the whole test split: bits per character, the state
carried through the text):

* unrolled   `unrolled.train(...)` with its defaults (config.py: Adam at 1e-2, cosine from a 20-step
             warmup down to 0.1 x lr, gradient-norm clipping at 1, forget-gate bias 0, truncated
             BPTT with the state carried across windows); only the size, the budget and the seed
             are set.
* plain      the loop a user writes from the PyTorch tutorials: nn.Embedding + nn.LSTM + nn.Linear,
             random windows of the training text starting from a zero state, Adam at a constant
             2e-3, cross-entropy, no clipping or schedule.

The plain model is also scored from a zero state per window of seq_len (how it was trained), and
its better number is the one compared, so the comparison never favours unrolled by evaluating the
plain loop in a way it was not trained for.

    python benchmarks/quality.py --minutes 2 --out benchmarks/quality.json   # both corpora

Prints one JSON object on stdout (the README's table is made from it) and a Markdown table on
stderr; --out FILE also writes the JSON there, replacing FILE only once something was measured
(without the corpora under --data it measures nothing, says what is missing and exits with 2).
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import unrolled
from unrolled.charlm.evaluate import evaluate_tokens
from unrolled.charlm.text import Vocabulary, read_corpus, split, to_tokens
from quality_setup import CORPORA, add_run_arguments, start, write_result


class PlainLM(nn.Module):
    """What a user writes: embedding -> torch.nn.LSTM -> linear."""

    def __init__(self, V: int, E: int, H: int, L: int):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, L, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        h, state = self.lstm(self.embedding(idx), state)  # (B, T, H)
        return self.head(h), state  # (B, T, V)


def train_plain(train_tokens: np.ndarray, V: int, args, seed: int) -> tuple[PlainLM, int]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PlainLM(V, args.embedding_size, args.hidden_size, args.num_layers)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data = torch.from_numpy(train_tokens.astype(np.int64))
    T, B = args.seq_len, args.batch_size
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 60 * args.minutes:
        ix = torch.from_numpy(rng.integers(0, len(data) - T - 1, size=B))
        x = torch.stack([data[i:i + T] for i in ix])  # (B, T)
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])  # (B, T)
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model.eval(), steps


@torch.no_grad()
def zero_state_bpc(model, tokens: np.ndarray, seq_len: int, batch_size: int = 64) -> float:
    """Score each window of seq_len from a zero state (how the plain loop was trained)."""
    n = (len(tokens) - 1) // seq_len
    data = torch.from_numpy(tokens[: n * seq_len + 1].astype(np.int64))
    total, count = 0.0, 0
    for s in range(0, n, batch_size):
        rows = range(s, min(n, s + batch_size))
        x = torch.stack([data[r * seq_len:(r + 1) * seq_len] for r in rows])  # (b, T)
        y = torch.stack([data[r * seq_len + 1:(r + 1) * seq_len + 1] for r in rows])  # (b, T)
        logits, _ = model(x)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count / math.log(2)


def run_corpus(name: str, path: Path, args, order: list[str]) -> dict:
    text = read_corpus([path])
    vocab = Vocabulary.from_text(text)
    tokens = to_tokens(vocab.encode(text), len(vocab))
    train_t, val_t, test_t = split(tokens)
    out = {"chars": len(tokens), "vocab": len(vocab), "test_chars": len(test_t)}
    for contender in order:
        t0 = time.perf_counter()
        if contender == "unrolled":
            tmp = Path(tempfile.mkdtemp(prefix="quality-"))
            try:
                r = unrolled.train(paths=[str(path)], out=str(tmp / "run"), hidden_size=args.hidden_size,
                                   num_layers=args.num_layers, embedding_size=args.embedding_size,
                                   batch_size=args.batch_size, seq_len=args.seq_len, max_minutes=args.minutes,
                                   seed=args.seed, progress=False, device="cpu")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            # train() scored its best checkpoint on this very test split with evaluate_tokens,
            # B = min(batch_size, 64) streams and windows of max(seq_len, 256): the plain model below
            # is scored with the same call.
            out["unrolled"] = {"test_bpc": r.metrics["test_bpc"], "steps": r.step,
                               "train_minutes": r.metrics["minutes"]}
        else:
            model, steps = train_plain(train_t, len(vocab), args, args.seed)
            nats, count = evaluate_tokens(model, test_t, min(args.batch_size, 64), max(args.seq_len, 256))
            carried = nats / count / math.log(2)
            zero = zero_state_bpc(model, test_t, args.seq_len)
            out["plain"] = {"test_bpc": min(carried, zero), "test_bpc_carried": carried,
                            "test_bpc_zero_state": zero, "steps": steps}
        out[contender]["seconds_total"] = time.perf_counter() - t0
        print(f"{name:12s} {contender:9s} test {out[contender]['test_bpc']:.4f} bits/char after "
              f"{out[contender]['steps']} steps", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap)
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget per contender per corpus")
    args = ap.parse_args(argv)
    started = start(args, "quality")
    if started is None:
        return {}
    data, result = started
    result["corpora"] = {}
    for i, c in enumerate(args.corpora):
        order = ["unrolled", "plain"] if i % 2 == 0 else ["plain", "unrolled"]  # interleaved, alternating
        result["corpora"][c] = run_corpus(c, data / CORPORA[c], args, order)
    write_result(result, args.out)
    print("\n| corpus | unrolled defaults | plain PyTorch loop | steps (unrolled / plain) |", file=sys.stderr)
    print("| --- | --- | --- | --- |", file=sys.stderr)
    for c, r in result["corpora"].items():
        print(f"| {c} | {r['unrolled']['test_bpc']:.3f} | {r['plain']['test_bpc']:.3f} | "
              f"{r['unrolled']['steps']} / {r['plain']['steps']} |", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 2)
