"""Bits per character of a text under a model, with the hidden state carried through it.

    nats/char = -(1/N) sum_t ln p(c_{t+1} | c_1..c_t)
    bits/char = nats/char / ln 2          perplexity = exp(nats/char) = 2^(bits/char)

The text is read as B parallel contiguous streams (as in training), each from a zero state, in
windows of `seq_len` with the state carried across every window edge, so each prediction sees
everything before it in its stream. With batch_size=1 every character after the first is
predicted; with B streams the last (N - 1) mod B are not, and `chars` says how many were.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unrolled.errors import UserError
from unrolled.charlm.text import TokenStreams, to_tokens


def reading(tokens, batch_size: int, seq_len: int) -> TokenStreams | None:
    """`tokens` as at most `batch_size` streams read in windows of `seq_len`; None if nothing to predict."""
    n = len(tokens)
    return TokenStreams(tokens, max(1, min(batch_size, n - 1)), seq_len) if n >= 2 else None


def window_nats(model, x, y, state):
    """-> (the summed -ln p of a window's targets, as a tensor; the state after it)."""
    logits, state = model(x, state)  # (B, t, V)
    wide = torch.promote_types(logits.dtype, torch.float32)  # half precision scored in float32
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).to(wide), y.reshape(-1), reduction="sum"), state


@torch.no_grad()
def evaluate_tokens(model, tokens, batch_size: int = 16, seq_len: int = 256,
                    max_chars: int | None = None, on_window=None) -> tuple[float, int]:
    """-> (sum of -ln p over the predicted symbols, how many). `tokens` is any array-like.
    `on_window(n)`, when given, is called after each window with the symbols it scored."""
    streams = reading(tokens, batch_size, seq_len)
    if streams is None:
        return 0.0, 0
    B = streams.batch_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    limit = None if max_chars is None else max(1, max_chars // B)
    try:
        for w in streams.tail_windows(seq_len):
            x, y = w.x.to(device), w.y.to(device)  # (B, t)
            if limit is not None and count // B >= limit:
                break
            nats, state = window_nats(model, x, y, state)
            total += nats.item()
            count += y.numel()
            if on_window is not None:
                on_window(y.numel())
    finally:
        model.train(was_training)
    return total, count


def summarize(nats: float, count: int) -> dict:
    per = nats / count if count else float("nan")
    return {"bits_per_char": per / math.log(2), "nats_per_char": per,
            "perplexity": _exp(per) if count else float("nan"), "chars": count}


def _exp(x: float) -> float:
    """e^x, or inf past float range (a diverged model's cross-entropy can exceed 709 nats)."""
    return math.exp(x) if x < 709.0 else float("inf")


def evaluate(model, text: str | bytes, batch_size: int = 16, seq_len: int = 256,
             unknown: str = "error", replacement: str | None = None, what: str = "the text") -> dict:
    """Bits per character and perplexity of `text` under `model` (a CharLM).

    Returns {"bits_per_char", "nats_per_char", "perplexity", "chars"}. Symbols outside the
    model's vocabulary are an error unless `unknown` is "skip" or "replace".
    """
    if batch_size <= 0 or seq_len <= 0:
        raise UserError("--batch-size and --seq-len must be positive integers")
    tokens = encode_for(model, text, unknown, replacement, what)
    nats, count = evaluate_tokens(model, tokens, batch_size, seq_len)
    return summarize(nats, count)


def encode_for(model, text: str | bytes, unknown: str = "error", replacement: str | None = None,
               what: str = "the text"):
    """`text` as the model's tokens, refusing a text with nothing to predict."""
    ids = model.vocab.encode(text, unknown=unknown, replacement=replacement, what=what)
    if len(ids) < 2:
        raise UserError(f"{what} has fewer than two characters; there is nothing to predict")
    return to_tokens(ids, len(model.vocab))
