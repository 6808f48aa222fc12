"""Dynamic evaluation (Krause, Kahembwe, Murray and Renals 2018): the model keeps learning while it reads.

The text is cut into segments s_1, s_2, ... of `segment` characters (per stream). For each segment,
in order:

    1. score it:   loss_i = -sum ln p(c | everything before it) under the current weights theta_i
    2. learn it:   g_i = d loss_i / d theta  (through this segment only; the hidden state carried
                   in from the segment before is a constant, as in truncated BPTT)
                   theta_{i+1} = theta_i - lr * g_i / n_i + decay * (theta_0 - theta_i)   (n_i: its characters)

so every character is scored before the model has learned anything from it, and the weights drift
toward the text being read while `decay` pulls them back toward the trained ones (theta_0). This is
the paper's SGD rule with its decay to the global weights (their equation 8, without the RMS
scaling of section 6, which needs gradient statistics of the training data). The hidden state is
carried from segment to segment, exactly as `evaluate` carries it across windows.

With B > 1 parallel streams (as `evaluate` reads text) a segment of stream b is learned from
before the next segment of stream b - 1, which lies earlier in the text; no character is ever
learned from before it is scored, but the model has then read later parts of the text, so
batch_size=1 is the strict reading order and the default.
"""
from __future__ import annotations

import sys

import torch

from unrolled.charlm.evaluate import encode_for, evaluate_tokens, reading, summarize, window_nats
from unrolled.errors import UserError
from unrolled.recurrent import detach_state

DEFAULT_SEGMENT = 50   # characters per update (per stream)
DEFAULT_LR = 0.1       # the SGD step on the segment's mean loss per character
DEFAULT_DECAY = 0.001  # pull toward the trained weights per update
# Chosen on the validation split of the Linux corpus (docs/training.md#dynamic-evaluation).


def check_dynamic(segment: int, lr: float, decay: float) -> None:
    if segment <= 0:
        raise UserError(f"--dynamic-segment must be a positive integer, got {segment}")
    if not lr > 0:
        raise UserError(f"--dynamic-lr must be positive, got {lr}")
    if not 0 <= decay < 1:
        raise UserError(f"--dynamic-decay must be in [0, 1), got {decay}")


def dynamic_evaluate_tokens(model, tokens, batch_size: int = 1, segment: int = DEFAULT_SEGMENT,
                            lr: float = DEFAULT_LR, decay: float = DEFAULT_DECAY,
                            max_chars: int | None = None, per_segment: list | None = None,
                            on_window=None) -> tuple[float, int]:
    """-> (sum of -ln p over the predicted symbols, how many), adapting `model` as it reads.

    The model's weights are restored when this returns (the adaptation is for this text only).
    Dropout is off (eval mode), as in `evaluate_tokens`. `per_segment`, a list, receives each
    segment's summed -ln p as it is scored; `on_window(n)` is called after each segment with the
    symbols it scored.
    """
    check_dynamic(segment, lr, decay)
    streams = reading(tokens, batch_size, segment)
    if streams is None:
        return 0.0, 0
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    try:
        for w in streams.tail_windows(segment):
            if max_chars is not None and count >= max_chars:
                break
            x, y = w.x.to(device), w.y.to(device)
            state = None if state is None else detach_state(state)
            with torch.enable_grad():
                loss, state = window_nats(model, x, y, state)
                grads = torch.autograd.grad(loss, params)
            total += loss.item()
            if per_segment is not None:
                per_segment.append(loss.item())
            count += y.numel()
            _step(params, grads, trained, lr / y.numel(), decay)
            if on_window is not None:
                on_window(y.numel())
    finally:
        with torch.no_grad():
            for p, t in zip(params, trained):
                p.copy_(t)
        model.train(was_training)
    return total, count


@torch.no_grad()
def _step(params, grads, trained, lr: float, decay: float) -> None:
    for p, g, t in zip(params, grads, trained):
        pull = (t - p).mul_(decay)
        p.add_(g, alpha=-lr).add_(pull)


def evaluate_dynamic(model, text: str | bytes, batch_size: int = 1, segment: int = DEFAULT_SEGMENT,
                     lr: float = DEFAULT_LR, decay: float = DEFAULT_DECAY, unknown: str = "error",
                     replacement: str | None = None, what: str = "the text", progress: bool = False) -> dict:
    """Bits per character of `text` with dynamic evaluation, beside the same reading without it.

    Returns `evaluate`'s fields for the dynamic reading, plus "static_bits_per_char" (the same
    streams and windows, weights fixed) and "gain_bits_per_char" (static - dynamic). `progress`
    shows a bar on stderr over both readings (a large model over a long text takes minutes).
    """
    if batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size}")
    check_dynamic(segment, lr, decay)
    tokens = encode_for(model, text, unknown, replacement, what)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # only when shown: the import takes a moment
        bar = tqdm(total=2 * max(0, len(tokens) - 1), unit="char", unit_scale=True, dynamic_ncols=True, disable=None,
                   desc=f"{what}: weights fixed, then learning", file=sys.stderr)
    try:
        on_window = None if bar is None else bar.update
        static = summarize(*evaluate_tokens(model, tokens, batch_size, segment, on_window=on_window))
        result = summarize(*dynamic_evaluate_tokens(model, tokens, batch_size, segment, lr, decay,
                                                    on_window=on_window))
    finally:
        if bar is not None:
            bar.close()
    result["static_bits_per_char"] = static["bits_per_char"]
    result["gain_bits_per_char"] = static["bits_per_char"] - result["bits_per_char"]
    return result
