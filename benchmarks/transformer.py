"""A small character Transformer, the baseline unrolled's LSTM is measured against.

    python benchmarks/transformer.py CORPUS --minutes 10 --threads 1 [--out result.json]

The model and its training follow the published CPU settings of nanoGPT's `shakespeare_char`
example, written here from those numbers: a decoder-only Transformer (pre-norm blocks of causal
self-attention and a 4x GELU MLP, learned positions, the output layer tied to the embedding),
4 layers, 4 heads, 128 wide, context (block) 64, batch 12, dropout 0, AdamW lr 1e-3 with
betas (0.9, 0.99) and weight decay 0.1 on the matrices, 100 warmup steps then a cosine decay to
1e-4, gradient norm clipped at 1. Batches are random windows of the training split. The cosine
follows the fraction of the wall-clock budget spent (as `unrolled train --max-minutes` does),
because the budget is time, not steps.

Data as unrolled cuts it: the vocabulary is the sorted set of the file's characters, the first
80% trains, the next 10% validates, the last 10% tests. The test score reads the test split in
windows of one block that advance by half a block, and scores only each window's second half
(the first window scores all), so every character but the split's first 32 is predicted with
at least half a block (32 characters) of context.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from quality_setup import not_a_corpus

SETTINGS = dict(n_layer=4, n_head=4, n_embd=128, block=64, batch=12, lr=1e-3, min_lr=1e-4,
                betas=(0.9, 0.99), weight_decay=0.1, warmup=100, clip=1.0)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, D/heads)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, n_layer: int, n_head: int, n_embd: int, block: int):
        super().__init__()
        self.block = block
        self.tok, self.pos = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def lr_at(step: int, fraction: float, s: dict) -> float:
    if step < s["warmup"]:
        return s["lr"] * (step + 1) / s["warmup"]
    return s["min_lr"] + 0.5 * (s["lr"] - s["min_lr"]) * (1 + math.cos(math.pi * min(1.0, fraction)))


def train(model, data: torch.Tensor, seconds: float, s: dict, seed: int) -> int:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=s["lr"], betas=s["betas"])
    g = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    while (spent := time.perf_counter() - start) < seconds:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spent / seconds, s)
        at = torch.randint(len(data) - s["block"] - 1, (s["batch"],), generator=g)
        x = torch.stack([data[i:i + s["block"]] for i in at])
        y = torch.stack([data[i + 1:i + 1 + s["block"]] for i in at])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        opt.step()
        step += 1
    return step


@torch.no_grad()
def test_bits_per_char(model, data: torch.Tensor, block: int, batch: int = 256) -> tuple[float, int]:
    """Windows of `block` advancing by block/2; each scores its second half (the first: all of it),
    and one last window ending at the split's end scores what is left."""
    model.eval()
    n, half = len(data), block // 2
    if n <= block:
        raise ValueError(f"the test split ({n} characters) is not longer than one block ({block})")
    starts = list(range(0, n - block, half))  # x = data[s:s+block] predicts targets s+1 .. s+block
    windows = [(s, 0 if s == 0 else half) for s in starts]
    done = starts[-1] + block  # the last target scored so far
    if done < n - 1:
        windows.append((n - 1 - block, block - (n - 1 - done)))
    nats, count = 0.0, 0
    for i in range(0, len(windows), batch):
        part = windows[i:i + batch]
        x = torch.stack([data[s:s + block] for s, _ in part])
        y = torch.stack([data[s + 1:s + 1 + block] for s, _ in part])
        logp = F.log_softmax(model(x), dim=-1).gather(2, y[..., None])[..., 0]  # (b, block)
        for row, (_, first) in enumerate(part):
            nats -= logp[row, first:].sum().item()
            count += block - first
    assert count == n - 1
    return nats / count / math.log(2), count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="a UTF-8 text file")
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out", help="also write the result as JSON to this file")
    args = ap.parse_args(argv)
    path = Path(args.corpus)
    if not_a_corpus("transformer.py", path):
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    a, b = int(round(len(ids) * 0.8)), int(round(len(ids) * 0.9))
    s = SETTINGS
    model = CharTransformer(len(chars), s["n_layer"], s["n_head"], s["n_embd"], s["block"])
    steps = train(model, ids[:a], args.minutes * 60, s, args.seed)
    bpc, count = test_bits_per_char(model, ids[b:], s["block"])
    result = {"model": "transformer", "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
              "parameters": sum(p.numel() for p in model.parameters()), "minutes": args.minutes,
              "threads": args.threads, "updates": steps, "chars_seen": steps * s["batch"] * s["block"],
              "test_bits_per_char": bpc, "test_chars": count}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
