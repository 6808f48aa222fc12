"""Interventions: run the model over a text with chosen units held, and measure what changes.

A correlation between a unit and a feature (`search.py`) does not say the network uses the unit.
Holding the unit does: replace its value (clamp it to v, set it to zero, or to its mean over the
text) at every character or over a span, and compare the log-probability the model gives each
next character with and without the hold:

    delta_t = -(log2 p_held(c_{t+1} | c_1..c_t) - log2 p(c_{t+1} | c_1..c_t))     bits, > 0: worse

`delta_bpc` is its mean over the text; `by_feature` its mean inside and outside each yes/no
feature (in a comment, in a string, ...). An effect means little alone: a random unit held the
same way also costs bits. So the same intervention is made on N random units of the same layer
and kind (the controls), and the held unit's `percentile` among them says how unusual its effect
is (100: larger than every control's).

How a unit is held is `charlm/clamp.py` (h is replaced where it is computed, so the layer above
and the head see it; an LSTM's c from the next step on). The intervention and its controls run
as one batch: block 0 of the batch rows is the model untouched, block m holds intervention m, and
each block is the text cut into S streams that first read `warmup` characters before their
start, as `record` reads it. Layers without a held unit run whole windows through their fast
path; a layer with one runs a step at a time, on the same path.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from unrolled.charlm.clamp import Holds, layer_views, parse_unit, step_layer
from unrolled.errors import UserError
from unrolled.understand.features import compute as compute_features, kinds
from unrolled.understand.lexer import guess_language
from unrolled.understand.record import _default_streams, _leads, _streams_of, encode_text, record
from unrolled.understand.report import sample_positions

MODES = ("clamp", "zero", "mean")


def _grid(ids: np.ndarray, S: int, Ls: int, w: int) -> np.ndarray:
    """(S, w + Ls): each stream's w characters of warmup, then its own Ls (index 0 as padding)."""
    body = _streams_of(ids, S, Ls).numpy()
    return np.concatenate([_leads(ids, S, Ls, w), body], axis=1) if w else body


def _holds(model, interventions, S: int) -> list[Holds]:
    """Per layer, the replacements of every batch row: block m + 1 holds intervention m."""
    p = model.head.weight
    entries: list[list] = [[] for _ in range(model.rnn.num_layers)]
    for m, held in enumerate(interventions):
        for unit, value in held:
            entries[unit.layer] += [(unit.part, (m + 1) * S + s, unit.index, float(value)) for s in range(S)]
    return [Holds.of(e, p.device, p.dtype) if e else None for e in entries]


@torch.no_grad()
def run_held(model, text: str, interventions, span=None, streams: int | None = None, warmup: int = 256,
             window: int = 256, path: str = "auto", name: str = "the text") -> np.ndarray:
    """log p(next character) at every character of `text`, untouched and under each intervention.

    interventions  [[(clamp.Unit, value), ...], ...]: the units each one holds, and to what
    span           (a, b): hold only after reading characters a..b-1 (None: every character)
    path           the path every layer runs on ("auto", "fast", "kernel", "readable")
    -> (1 + len(interventions), N) float64: row 0 the model untouched; NaN at the last character."""
    ids = encode_text(model, text, name)
    N = len(ids)
    if N < 2:
        raise UserError(f"{name} needs at least two characters to measure a prediction")
    S = _default_streams(N) if streams is None else max(1, min(int(streams), N))
    Ls = -(-N // S)
    S = -(-N // Ls)
    w = min(int(warmup), Ls) if S > 1 else 0
    M = 1 + len(interventions)
    dev = next(model.parameters()).device
    grid = torch.from_numpy(_grid(ids, S, Ls, w)).to(dev).repeat(M, 1)  # (M*S, w+Ls)
    nxt = torch.from_numpy(_grid(np.append(ids[1:], 0), S, Ls, w)).to(dev).repeat(M, 1)
    pos = np.arange(S)[:, None] * Ls - w + np.arange(w + Ls)[None, :]  # (S, w+Ls) each column's character
    active = None
    if span is not None:
        act = (pos >= span[0]) & (pos < span[1])
        active = torch.from_numpy(np.tile(act, (M, 1))).to(dev)  # (M*S, w+Ls)
    holds = _holds(model, interventions, S)
    views = layer_views(model.rnn, path)
    was_training = model.training
    model.eval()
    try:
        logp = _run(model, views, holds, grid, nxt, active, w, window, S)  # (M*S, w+Ls)
    finally:
        model.train(was_training)
    out = np.full((M, N), np.nan)
    keep = (pos >= 0) & (pos < N - 1) & (np.arange(w + Ls)[None, :] >= w)  # (S, w+Ls)
    for m in range(M):
        out[m, pos[keep]] = logp[m * S:(m + 1) * S][keep]
    return out


def _run(model, views, holds, grid, nxt, active, w: int, window: int, S: int) -> np.ndarray:
    """The carried loop over windows of columns; -> log p of each next character (rows, columns)."""
    R, T = grid.shape
    states = [None] * len(views)
    logp = np.empty((R, T))
    bounds = list(range(0, w, window)) + list(range(w, T, window)) + [T]
    for k0, k1 in zip(bounds[:-1], bounds[1:]):
        if k0 == w and w:  # the first stream has no text before it: its warmup read padding
            for st in states:
                for part in st if isinstance(st, tuple) else (st,):
                    part[:, 0::S] = 0
        x = model.embed(grid[:, k0:k1])  # (R, W, D)
        for k, view in enumerate(views):
            if holds[k] is None:
                x, states[k] = view(x, states[k])  # (R, W, H), the whole window at once
                continue
            outs = []
            for j in range(k1 - k0):
                a = None if active is None else active[:, k0 + j]
                h, states[k] = step_layer(view, x[:, j], states[k], holds[k], a)
                outs.append(h.clone())
            x = torch.stack(outs, dim=1)  # (R, W, H)
        lp = F.log_softmax(model.head(x).double(), dim=-1)  # (R, W, V)
        logp[:, k0:k1] = lp.gather(-1, nxt[:, k0:k1].unsqueeze(-1)).squeeze(-1).cpu().numpy()
    return logp


def unit_means(model, text: str, units, sample: int = 20_000, name: str = "the text") -> dict:
    """{unit name: its mean over (an evenly spaced sample of) the text}, the value `mean` holds."""
    keys = tuple(sorted({u.key for u in units}))
    rec = record(model, text, keys=keys, positions=sample_positions(len(text), sample), probs=False,
                 warmup=256, name=name)
    return {u.name: float(rec.states[f"{u.key}{u.layer}"][:, u.index].mean()) for u in units}


def percentile(x: float, others) -> float:
    """Where x falls among `others`, 0..100 (ties count one half): 100 is above every one."""
    o = np.asarray(others, dtype=np.float64)
    if o.size == 0:
        return float("nan")
    return float(100.0 * ((o < x).sum() + 0.5 * (o == x).sum()) / o.size)


def _effects(base: np.ndarray, held: np.ndarray, feats: dict) -> dict:
    """delta bits per character over the text and inside / outside each yes/no feature."""
    d = -(held - base)[:-1] / math.log(2)  # (N-1,) bits, the last character predicts nothing
    by = {}
    for f, y in feats.items():
        y = y[:-1]
        by[f] = {"inside": float(d[y].mean()) if y.any() else None,
                 "outside": float(d[~y].mean()) if (~y).any() else None, "fraction": float(y.mean())}
    return {"delta_bpc": float(d.mean()), "by_feature": by, "delta": d}


def _value(mode: str, value, unit, means) -> float:
    if mode == "clamp":
        if value is None or not math.isfinite(value):
            raise UserError("--clamp needs a finite value, like --clamp 3")
        return float(value)
    return 0.0 if mode == "zero" else means[unit.name]


def _controls_of(model, unit, n: int, seed: int):
    """n random units of the same layer and kind as `unit`, never `unit` itself."""
    H = model.rnn.hidden_size
    if not 0 <= n <= H - 1:
        raise UserError(f"--controls must be 0..{H - 1} (the other units of the layer), got {n}")
    pool = [j for j in range(H) if j != unit.index]
    pick = np.random.default_rng(seed).choice(pool, size=n, replace=False) if n else []
    return [parse_unit(f"{unit.key}{unit.layer}:{int(j)}", model.rnn) for j in sorted(pick)]


def intervene(model, text: str, unit: str, mode: str = "zero", value: float | None = None, span=None,
              controls: int = 0, seed: int = 0, features=None, language: str = "auto", streams=None,
              path: str = "auto", name: str = "the text") -> dict:
    """Hold `unit` ("c1:97") by `mode` (clamp to `value`, zero, or its mean over the text), over
    every character or `span` (a, b), and measure it against `controls` random units of its layer
    and kind held the same way (see the module doc). Returns plain data:

        {"unit", "mode", "value", "span", "chars", "bpc", "held_bpc", "delta_bpc",
         "by_feature": {feature: {"inside", "outside", "fraction"}}, "largest": [...],
         "controls": {"n", "units", "delta_bpc", "percentile", "by_feature": {feature: percentile}},
         "delta": (N-1,) bits per character (an array, for drawing)}"""
    if mode not in MODES:
        raise UserError(f"the intervention must be one of {', '.join(MODES)}, got {mode!r}")
    if span is not None and not 0 <= span[0] < span[1] <= len(text):
        raise UserError(f"--span {span[0]}:{span[1]} must lie within the text's 0:{len(text)} and be non-empty")
    u = parse_unit(unit, model.rnn)
    others = _controls_of(model, u, controls, seed)
    means = unit_means(model, text, [u, *others], name=name) if mode == "mean" else {}
    held = [[(c, _value(mode, value, c, means))] for c in [u, *others]]
    logp = run_held(model, text, held, span=span, streams=streams, path=path, name=name)
    lang = guess_language(text) if language == "auto" else language
    feats = {k: v for k, v in compute_features(text, features, lang).items() if kinds({k: v})[k] == "binary"}
    main = _effects(logp[0], logp[1], feats)
    result = {"unit": u.name, "mode": mode, "value": held[0][0][1], "span": list(span) if span else None,
              "chars": len(text), "language": lang, "bpc": float(-np.nanmean(logp[0][:-1]) / math.log(2)),
              "held_bpc": float(-np.nanmean(logp[1][:-1]) / math.log(2)), "delta_bpc": main["delta_bpc"],
              "by_feature": main["by_feature"], "largest": _largest(text, main["delta"]), "delta": main["delta"]}
    if span is not None:
        result["delta_bpc_span"] = float(main["delta"][span[0]:span[1]].mean())
    if others:
        ctl = [_effects(logp[0], logp[m + 2], feats) for m in range(len(others))]
        result["controls"] = {
            "n": len(others), "units": [c.name for c in others], "delta_bpc": [c["delta_bpc"] for c in ctl],
            "percentile": percentile(main["delta_bpc"], [c["delta_bpc"] for c in ctl]),
            "by_feature": {f: percentile(main["by_feature"][f]["inside"], [c["by_feature"][f]["inside"] for c in ctl])
                           for f in feats if main["by_feature"][f]["inside"] is not None}}
    return result


def _largest(text: str, delta: np.ndarray, k: int = 10) -> list[dict]:
    """The k characters whose prediction changed most (either way), with a little context."""
    order = np.argsort(-np.abs(delta), kind="stable")[:k]
    return [{"at": int(t), "next": text[t + 1], "delta_bits": float(delta[t]),
             "context": text[max(0, t - 20):t + 1]} for t in order]
