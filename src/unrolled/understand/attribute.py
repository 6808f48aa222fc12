"""Attribution over time: which earlier characters a prediction rests on, and how far back a unit looks.

**Integrated gradients** (Sundararajan, Taly and Yan 2017) for the prediction at character t,
F(x) = log p(c_{t+1} | c_1..c_t) of the character that follows (or a chosen one), over the
window of the last W input encodings x_{t-W+1..t} (embedding rows, or one-hot vectors):

    IG_k = x_k . integral_0^1 dF/dx_k (baseline + a (x - baseline)) da,     baseline = 0

The integral is the trapezoid rule on `steps` + 1 evenly spaced a, all run as one batch, with

    IG_k = (x_k - b_k) . integral_0^1 dF/dx_k (b + a (x - b)) da

Two choices decide what the numbers mean, so they are stated:

* the baseline b: `baseline=" "` (the default) is the window made blank, every position the
  encoding of a space; `baseline="zero"` is the zero vector at every position (no input at all:
  for a one-hot model no character, for an embedding the origin of its space). On the Linux
  model the zero path is chaotic: a window of near-zero inputs read from a real state drives the
  LSTM through states where dF/dx reaches 1e5, and the trapezoid sum misses F(x) - F(b) by far
  more than F itself (docs/understanding.md has the measurement); the blank window stays on
  text the model knows, and at the default 512 steps its sums close to within a percent at most
  characters (`completeness_error` says where they do not);
* the state carried into the window (after reading c_1..c_{t-W}) is held fixed, at the value
  the text gives it, for the baseline as for the text: the window's characters get the credit,
  the characters before it none (widen the window to reach them).

Completeness says the attributions add up to F(x) - F(b); `completeness_error` is the
relative gap |sum IG - (F(x) - F(b))| / |F(x) - F(b)|, which shrinks as `steps` grows
(tests/test_attribute.py: under 1% on a tiny model). Beside it, gradient x input
x_k . dF/dx_k at the text itself (one backward pass, no baseline, no completeness).

**Memory span** of a unit: the size of d u_t / d x_{t-k} (the Euclidean norm over the input
encoding) as the offset k grows, averaged over evenly spaced characters t, each read from the
state the text carries to t - K. `half_life` is the first offset past the curve's peak at which it
falls below half of the peak, in characters (None when it stays above for the whole K).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unrolled.cells import facts
from unrolled.charlm.clamp import check_layer, parse_unit
from unrolled.errors import UserError
from unrolled.understand.record import encode_text, record


def _state_before(model, ids: np.ndarray, a: int):
    """The layer's state after reading ids[:a] (None: zeros, when a is 0)."""
    if a == 0:
        return None
    dev = next(model.parameters()).device
    with torch.no_grad():
        _, state = model(torch.from_numpy(ids[:a]).to(dev).unsqueeze(0))
    return state


def _target(model, text: str, at: int, target: str | None) -> int:
    """The index of the character whose log-probability is attributed: the one after text[at]."""
    if target is None:
        if at + 1 >= len(text):
            raise UserError(f"--at {at} is the text's last character: nothing follows it; give --target CHAR")
        target = text[at + 1]
    if len(target) != 1:
        raise UserError(f"--target must be one character, got {target!r}")
    return int(encode_text(model, target, "--target", "give a character the model knows")[0])


def attribute(model, text: str, at: int, window: int = 100, steps: int = 512, target: str | None = None,
              baseline: str = " ", name: str = "the text") -> dict:
    """Integrated gradients and gradient x input for the prediction after text[at] (module doc).

        {"at", "char", "target", "logp", "baseline_logp", "window": [a, at + 1], "steps", "baseline",
         "attributions": [{"offset", "at", "char", "ig", "grad_x_input"}, ...] (offset 0 first),
         "ig_sum", "completeness_error"}"""
    check_layer(model.rnn)
    if not 0 <= at < len(text):
        raise UserError(f"--at must be a character of the text, 0..{len(text) - 1}, got {at}")
    if window < 1 or steps < 1:
        raise UserError(f"--window and --steps must be positive integers, got {window} and {steps}")
    ids = encode_text(model, text, name)
    a = max(0, at + 1 - window)
    tgt = _target(model, text, at, target)
    state = _state_before(model, ids, a)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = model.embed(torch.from_numpy(ids[a:at + 1]).to(dev).unsqueeze(0))  # (1, W, D)
            b = _baseline(model, baseline, x)  # (1, W, D)
        alphas = torch.linspace(0, 1, steps + 1, dtype=x.dtype, device=dev)
        xs = (b + alphas[:, None, None] * (x - b)).requires_grad_(True)  # (m+1, W, D): the baseline at a = 0
        values = _log_p(model, xs, _repeat(state, steps + 1), tgt)  # (m+1,)
        (grads,) = torch.autograd.grad(values.sum(), xs)  # (m+1, W, D)
    finally:
        model.train(was_training)
    w = torch.full((steps + 1,), 1.0 / steps, dtype=x.dtype, device=dev)
    w[0] = w[-1] = 0.5 / steps
    ig = ((x - b)[0] * (w[:, None, None] * grads).sum(0)).sum(-1).double().cpu().numpy()  # (W,)
    gxi = (x[0] * grads[-1]).sum(-1).double().cpu().numpy()  # (W,)
    values = values.detach()
    change = float(values[-1] - values[0])
    rows = [{"offset": at - p, "at": p, "char": text[p], "ig": float(ig[p - a]), "grad_x_input": float(gxi[p - a])}
            for p in range(at, a - 1, -1)]
    err = abs(float(ig.sum()) - change) / abs(change) if change else float("nan")
    return {"at": at, "char": text[at], "target": _char(model, tgt), "logp": float(values[-1]),
            "baseline_logp": float(values[0]), "window": [a, at + 1], "steps": steps,
            "baseline": "zero" if baseline == "zero" else repr(baseline),
            "attributions": rows, "ig_sum": float(ig.sum()), "completeness_error": err}


def _baseline(model, baseline: str, x):
    """The baseline window: zeros, or every position the encoding of one character."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if len(baseline) != 1:
        raise UserError(f"--baseline must be zero or one character, got {baseline!r}")
    idx = encode_text(model, baseline, "--baseline", "give a character the model knows, or --baseline zero")
    return model.embed(torch.from_numpy(idx).to(x.device).unsqueeze(0)).expand_as(x)


def _char(model, index: int) -> str:
    return model.vocab.decode([index])


def _repeat(state, n: int):
    """A batch-1 state repeated to n rows (None stays None)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.expand(-1, n, -1).contiguous() for s in state)
    return state.expand(-1, n, -1).contiguous()


def _log_p(model, xs, state, target: int):
    """log p(target) after the last position of each row of xs (B, W, D), from `state`."""
    h, _ = model.rnn(xs, state)  # (B, W, H)
    return F.log_softmax(model.head(h[:, -1]).double(), dim=-1)[:, target]  # (B,)


def memory_span(model, text: str, unit: str, max_offset: int = 100, samples: int = 64,
                name: str = "the text") -> dict:
    """How far back `unit` looks: the mean of |d u_t / d x_{t-k}| for k = 0..max_offset (module doc).

        {"unit", "offsets": [0..K], "gradient": [mean norm at each offset], "peak_offset",
         "half_life" (characters, or None), "samples"}"""
    u = parse_unit(unit, model.rnn)
    ids = encode_text(model, text, name)
    K = int(max_offset)
    if K < 1 or len(ids) < K + 2:
        raise UserError(f"--max-offset must be at least 1 and the text longer than it plus one character "
                        f"(the text has {len(ids)}), got {max_offset}")
    # Characters t with K before them, evenly spaced; each window starts from the state the text
    # carries to just before it (recorded, so every window reads from its own past).
    ts = np.unique(np.linspace(K + 1, len(ids) - 1, max(1, int(samples))).astype(np.int64))
    carries = facts(model.rnn).carries  # ("h",) or ("h", "c")
    rec = record(model, text, keys=carries, positions=ts - K - 1, probs=False, name=name)
    dev = next(model.parameters()).device
    p = model.head.weight
    parts = tuple(torch.stack([torch.from_numpy(rec.states[f"{key}{l}"]) for l in range(model.rnn.num_layers)]).to(p)
                  for key in carries)  # each (L, P, H)
    state = parts if len(parts) == 2 else parts[0]
    windows = torch.from_numpy(np.stack([ids[t - K:t + 1] for t in ts])).to(dev)  # (P, K+1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = model.embed(windows)
        x.requires_grad_(True)
        _, _, trace = model.rnn.readable(x, state, record=True)
        (g,) = torch.autograd.grad(trace[u.layer][u.key][:, -1, u.index].sum(), x)  # (P, K+1, D)
    finally:
        model.train(was_training)
    curve = g.norm(dim=-1).double().mean(0).flip(0).cpu().numpy()  # (K+1,) offset 0 first
    return {"unit": u.name, "offsets": list(range(K + 1)), "gradient": [float(v) for v in curve],
            "peak_offset": int(np.argmax(curve)), "half_life": half_life(curve), "samples": int(ts.size)}


def half_life(curve) -> int | None:
    """The first offset past the curve's peak where it falls below half the peak (None: never)."""
    curve = np.asarray(curve, dtype=np.float64)
    peak = int(np.argmax(curve))
    below = np.nonzero(curve[peak:] < curve[peak] / 2)[0]
    return int(peak + below[0]) if below.size else None
