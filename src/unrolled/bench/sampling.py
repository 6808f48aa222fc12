"""Sampling and recording speed, characters per second (a 2-layer LSTM of 256, CharLM defaults).

Sampling at batch 1 and 64: a naive step loop over nn.LSTM (embed, one step of the module, head,
softmax, multinomial, `.tolist()`), what `unrolled sample` runs (`sample.generate`), and the
model's own preallocated stepper (`CharLM.stepper`, shown as "unrolled StepSampler", its old
name, so the tables of docs/performance.md stay comparable). Recording: `understand.record` keeping every state and gate,
through the readable path.
"""
from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F

from unrolled.bench.models import PlainCharModel, make_lm
from unrolled.bench.settings import Settings
from unrolled.bench.timing import interleaved
from unrolled.charlm.sample import generate
from unrolled.understand.record import record


def bench_sample(s: Settings, vocab, device) -> list[dict]:
    """Characters per second of generation at batch 1 and 64 (2-layer LSTM of 256, CharLM defaults)."""
    lm = make_lm("lstm", 256, 2, vocab, device).eval()
    plain = PlainCharModel("lstm", len(vocab), lm.config.embedding_size, 256, 2).to(device).eval()
    plain.load_state_dict(lm.state_dict())
    rows = []
    for batch in (1, 64):
        length = 100 if s.quick else 200
        gen = torch.Generator(device=device).manual_seed(0)
        stepper = lm.stepper(batch)

        @torch.no_grad()
        def naive():
            idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
            state, out = None, []
            for _ in range(length):
                h, state = plain.rnn(plain.embedding(idx), state)  # (N, 1, H)
                probs = F.softmax(plain.head(h[:, -1]), dim=-1)  # (N, V)
                idx = torch.multinomial(probs, 1, generator=gen)  # (N, 1)
                out.append(idx.view(-1).tolist())
            return out

        def library():
            return [nxt.tolist() for nxt in generate(lm, length, seed=0, num_samples=batch)]

        @torch.no_grad()
        def stepped():
            stepper.reset()
            idx = torch.zeros(batch, dtype=torch.long, device=device)
            out = []
            for _ in range(length):
                probs = torch.softmax(stepper.logits(idx), dim=-1)  # (N, V)
                idx = torch.multinomial(probs, 1, generator=gen).view(-1)  # (N,)
                out.append(idx.tolist())
            return out

        fns = {"torch naive loop": naive, "unrolled sample": library, "unrolled StepSampler": stepped}
        times = interleaved(fns, s.n_repeats, device)
        cps = {n: round(batch * length / statistics.median(ts), 1) for n, ts in times.items()}
        base = cps["torch naive loop"]
        rows.append({"batch": batch, "chars_per_s": cps, "speedup": {n: round(v / base, 3) for n, v in cps.items()}})
        print(f"  sample batch {batch}: " + ", ".join(f"{n} {v:,.0f}" for n, v in cps.items()), file=sys.stderr)
    return rows


def bench_record(s: Settings, vocab, text: str, device) -> dict:
    """Characters per second of `understand.record` (every state and gate of a 2-layer LSTM of 256)."""
    lm = make_lm("lstm", 256, 2, vocab, device).eval()
    piece = text[:5_000 if s.quick else 20_000]
    times = interleaved({"record": lambda: record(lm, piece)}, max(2, s.n_repeats - 2), device)["record"]
    cps = round(len(piece) / statistics.median(times), 1)
    print(f"  record: {cps:,.0f} chars/s", file=sys.stderr)
    return {"chars": len(piece), "chars_per_s": cps}
