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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unrolled.errors import UserError
from unrolled.charlm.text import TokenStreams, to_tokens


def reading(tokens, batch_size: int, seq_len: int) -> TokenStreams | None:
    """`tokens` as at most `batch_size` streams read in windows of `seq_len`; None if nothing to predict."""
    n = len(tokens)
    return TokenStreams(tokens, max(1, min(batch_size, n - 1)), seq_len) if n >= 2 else None


def row_nats(model, x, y, state):
    """-> (the summed -ln p of each row's targets in a window, a (B,) tensor; the state after it)."""
    logits, state = model(x, state)  # (B, t, V)
    wide = torch.promote_types(logits.dtype, torch.float32)  # half precision scored in float32
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).to(wide), y.reshape(-1), reduction="none")
    return nats.view(y.shape).sum(1), state


def window_nats(model, x, y, state):
    """-> (the summed -ln p of a window's targets, as a tensor; the state after it)."""
    nats, state = row_nats(model, x, y, state)
    return nats.sum(), state


@torch.no_grad()
def evaluate_tokens(model, tokens, batch_size: int = 16, seq_len: int = 256,
                    max_chars: int | None = None, on_window=None, per_stream: list | None = None) -> tuple[float, int]:
    """-> (sum of -ln p over the predicted symbols, how many). `tokens` is any array-like.
    `on_window(n)`, when given, is called after each window with the symbols it scored.
    `per_stream`, a list, receives one `Stream` for each of the B streams (see `streams_report`)."""
    streams = reading(tokens, batch_size, seq_len)
    if streams is None:
        return 0.0, 0
    B = streams.batch_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    state, count = None, 0
    rows = torch.zeros(B, dtype=torch.float64)
    limit = None if max_chars is None else max(1, max_chars // B)
    try:
        for w in streams.tail_windows(seq_len):
            x, y = w.x.to(device), w.y.to(device)  # (B, t)
            if limit is not None and count // B >= limit:
                break
            nats, state = row_nats(model, x, y, state)
            rows += nats.double().cpu()
            count += y.numel()
            if on_window is not None:
                on_window(y.numel())
    finally:
        model.train(was_training)
    if per_stream is not None:
        per_stream.extend(Stream(b, b * streams.row_len, count // B, float(rows[b])) for b in range(B))
    return float(rows.sum()), count


@dataclass(frozen=True)
class Stream:
    """One of the B streams an evaluation reads: its index, where it starts in the text (a
    character offset), how many characters it predicted and their summed -ln p."""
    index: int
    start: int
    chars: int
    nats: float

    @property
    def bits_per_char(self) -> float:
        return self.nats / self.chars / math.log(2) if self.chars else float("nan")


RUNAWAY = 2.0  # a stream is said to run away past this many times the median stream's bits/char


def unigram_bits(tokens) -> float:
    """Bits per character of the text under its own character frequencies (what a model that
    knows nothing but those frequencies scores on it)."""
    counts = np.bincount(np.asarray(tokens[1:], dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def streams_report(streams: list[Stream], tokens) -> dict:
    """The streams of one evaluation: each stream's figures, the median stream's bits/char, the
    text's unigram bits/char, and the streams that ran away: scored worse than both the unigram
    and RUNAWAY times the median (a state that grows without bound in one stream, say, while the
    others read well; the mean over streams hides how)."""
    rows = [{"stream": s.index, "start": s.start, "chars": s.chars, "bits_per_char": s.bits_per_char}
            for s in streams if s.chars]
    median = float(np.median([r["bits_per_char"] for r in rows])) if rows else float("nan")
    unigram = unigram_bits(tokens)
    runaway = [r for r in rows if r["bits_per_char"] > max(unigram, RUNAWAY * median)]
    return {"streams": rows, "median_stream_bits_per_char": median, "unigram_bits_per_char": unigram,
            "runaway_streams": runaway}


def runaway_warning(report: dict, what: str) -> str | None:
    """One sentence on the streams of `report` that ran away, None when none did."""
    bad = report["runaway_streams"]
    if not bad:
        return None
    worst = max(bad, key=lambda r: r["bits_per_char"])
    n, median, unigram = len(report["streams"]), report["median_stream_bits_per_char"], report["unigram_bits_per_char"]
    where = f"stream {worst['stream'] + 1}, from character {worst['start']:,} on,"
    if len(bad) == 1:
        return (f"{where} one of the {n} streams {what} is read in, scores {worst['bits_per_char']:.2f} bits/char "
                f"against {median:.2f} for the median stream and {unigram:.2f} for the text's own character "
                "frequencies: the model is lost there (a carried state can fall into one it never leaves), and the "
                "mean includes it")
    return (f"{len(bad)} of the {n} streams {what} is read in score worse than both {unigram:.2f} bits/char (the "
            f"text's own character frequencies) and {RUNAWAY:g} times the median stream's {median:.2f}; the worst, "
            f"{where} scores {worst['bits_per_char']:.2f}: the model is lost there (a carried state can fall into "
            "one it never leaves), and the mean includes them")


def stream_figures(streams: list[Stream], tokens, what: str) -> tuple[dict, str | None]:
    """The median and worst stream's bits/char and how many streams ran away ({"median_stream_bpc",
    "worst_stream_bpc", "runaway_streams"}), and `runaway_warning`'s sentence (None when none did)."""
    report = streams_report(streams, tokens)
    figures = {"median_stream_bpc": report["median_stream_bits_per_char"],
               "worst_stream_bpc": max((r["bits_per_char"] for r in report["streams"]), default=float("nan")),
               "runaway_streams": len(report["runaway_streams"])}
    return figures, runaway_warning(report, what)


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

    Returns {"bits_per_char", "nats_per_char", "perplexity", "chars"} and the figures of each of
    the `batch_size` streams the text is read in (`streams_report`: "streams",
    "median_stream_bits_per_char", "unigram_bits_per_char", "runaway_streams"). Symbols outside
    the model's vocabulary are an error unless `unknown` is "skip" or "replace".
    """
    if batch_size <= 0 or seq_len <= 0:
        raise UserError("--batch-size and --seq-len must be positive integers")
    tokens = encode_for(model, text, unknown, replacement, what)
    streams: list[Stream] = []
    nats, count = evaluate_tokens(model, tokens, batch_size, seq_len, per_stream=streams)
    return {**summarize(nats, count), **streams_report(streams, tokens)}


def encode_for(model, text: str | bytes, unknown: str = "error", replacement: str | None = None,
               what: str = "the text"):
    """`text` as the model's tokens, refusing a text with nothing to predict."""
    ids = model.vocab.encode(text, unknown=unknown, replacement=replacement, what=what)
    if len(ids) < 2:
        raise UserError(f"{what} has fewer than two characters; there is nothing to predict")
    return to_tokens(ids, len(model.vocab))
