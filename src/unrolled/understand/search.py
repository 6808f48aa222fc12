"""Search all units for the ones that track a feature of the text, and the LSTMVis query.

Scores, for a unit with values x_1..x_N and a feature y_1..y_N:

* binary y: the ROC AUC, the probability that x at a random positive character exceeds x at a
  random negative one (ties count one half). By Mann-Whitney,

      AUC = (sum of the ranks of x over positives - n1 (n1 + 1) / 2) / (n1 n0)

  with average ranks for ties, so one sort per unit scores it against every binary feature at
  once (a matrix product of the rank matrix with the labels). AUC 0.5 is chance; a unit that is
  *low* inside the feature is as informative as one that is high, so units are ranked by
  |AUC - 0.5| and the sign says which.
* numeric y: Pearson's r = cov(x, y) / (sd(x) sd(y)); ranked by |r|.

The LSTMVis select and match query (Strobelt et al. 2018), on a matrix of unit values:

* select(a, b): the units that are on (value > threshold) at every character of the span
  [a, b) and off in `pad_before` characters before it and `pad_after` after it;
* match(units): the stretches of the text where (nearly) all of those units are on together,
  ranked by the number of selected units on throughout (more first), then the size of the union
  of the selected units with all units on throughout (smaller first: fewer other units fire),
  then length (longer first).

Everything here takes and returns plain NumPy arrays, lists and dicts (a ranking is a dict that
also shows itself as a table in Jupyter).
"""
from __future__ import annotations

import numpy as np
import torch

from unrolled.errors import UserError
from unrolled.understand import render

BLOCK = 256  # units scored at a time, to bound the memory of the rank matrix


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N of each row of x (U, N), ties sharing their average rank. (U, N) float64.

    Rows, not columns: each unit's values are contiguous, so the sorts run along memory
    (torch's sort, which uses every core)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    U, N = t.shape
    sv, order = torch.sort(t, dim=1)  # (U, N) each
    idx = torch.arange(N).expand(U, N)
    new = torch.ones(U, N, dtype=torch.bool)
    new[:, 1:] = sv[:, 1:] != sv[:, :-1]  # a tie group starts here
    last = torch.ones(U, N, dtype=torch.bool)
    last[:, :-1] = new[:, 1:]  # a tie group ends here
    first_i = torch.cummax(torch.where(new, idx, 0), dim=1).values  # (U, N)
    last_i = torch.cummin(torch.where(last, idx, N - 1).flip(1), dim=1).values.flip(1)  # (U, N)
    ranks = torch.empty(U, N, dtype=torch.float64)
    ranks.scatter_(1, order, (first_i + last_i).double() / 2.0 + 1.0)
    return ranks.numpy()


def roc_auc(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every unit (column of values (N, U)) for every binary feature (labels (N,)
    or (N, F) bool). Returns (U,) or (F, U); NaN for a feature that is all one class."""
    values = np.asarray(values)
    single = labels.ndim == 1
    Y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)  # (N, F)
    n1 = Y.sum(0)  # (F,)
    n0 = Y.shape[0] - n1
    out = np.empty((Y.shape[1], values.shape[1]))
    for u0 in range(0, values.shape[1], BLOCK):
        R = average_ranks(np.ascontiguousarray(values[:, u0:u0 + BLOCK].T))  # (b, N)
        rank_sum = Y.T @ R.T  # (F, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, u0:u0 + BLOCK] = (rank_sum - (n1 * (n1 + 1) / 2)[:, None]) / (n1 * n0)[:, None]
    out[(n1 == 0) | (n0 == 0)] = np.nan
    return out[0] if single else out


def pearson(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pearson r of every unit (column of values (N, U)) with every numeric feature (targets
    (N,) or (N, F)). Returns (U,) or (F, U); 0 where either side is constant."""
    single = targets.ndim == 1
    Y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)  # (N, F)
    Y = Y - Y.mean(0)
    ysd = np.sqrt((Y ** 2).sum(0))  # (F,)
    out = np.empty((Y.shape[1], values.shape[1]))
    for u0 in range(0, values.shape[1], BLOCK):
        X = np.asarray(values[:, u0:u0 + BLOCK], dtype=np.float64)
        X = X - X.mean(0)
        xsd = np.sqrt((X ** 2).sum(0))  # (b,)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (Y.T @ X) / np.outer(ysd, xsd)  # (F, b)
        out[:, u0:u0 + BLOCK] = np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
    return out[0] if single else out


def score_units(values: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{feature name: (U,) score}: AUC for bool features, Pearson r for numeric ones."""
    binary = [k for k, v in features.items() if v.dtype == bool]
    numeric = [k for k in features if k not in binary]
    scores = {}
    if binary:
        auc = roc_auc(values, np.stack([features[k] for k in binary], axis=1))
        scores.update(zip(binary, auc))
    if numeric:
        r = pearson(values, np.stack([features[k] for k in numeric], axis=1))
        scores.update(zip(numeric, r))
    return {k: scores[k] for k in features}


def strength(score: np.ndarray, metric: str) -> np.ndarray:
    """How informative a score is, sign aside: |AUC - 0.5| * 2 or |r|, in [0, 1]."""
    s = np.abs(score - 0.5) * 2 if metric == "auc" else np.abs(score)
    return np.nan_to_num(s, nan=-1.0)


class Ranking(dict):
    """What `rank_units` returns: {feature: {"metric", "positives", "best": [...]}}, a plain dict
    that shows itself in Jupyter as the table `unrolled cells` writes."""

    def _repr_html_(self) -> str:
        return render.fragment(render.ranking_table(self))


def rank_units(values: np.ndarray, names: list[str], features: dict[str, np.ndarray],
               top: int = 5, screen: int | None = 20_000) -> Ranking:
    """Score every unit against every feature and keep the best `top` per feature:

        {feature: {"metric": "auc" | "r", "positives": fraction or None,
                   "best": [{"unit": name, "index": column, "score": s, "sign": +1 | -1}, ...]}}

    sign -1 marks a unit that is low where the feature is high (AUC < 0.5 or r < 0); strength
    is max(AUC, 1 - AUC) or |r|, the score of the unit turned the informative way round.

    Two passes when there are more than `screen` rows: every unit is scored on `screen` evenly
    spaced rows (sorting all units over all rows is the slow part), then the 4 * top best of
    each feature are scored again on every row, and those exact scores are the ones ranked and
    reported. screen=None scores everything on every row."""
    if values.shape[1] != len(names):
        raise ValueError(f"{values.shape[1]} columns of values but {len(names)} names")
    N = values.shape[0]
    rows = np.unique(np.linspace(0, N - 1, screen).astype(np.int64)) if screen and N > screen else None
    sub = values if rows is None else values[rows]
    scores = score_units(sub, {k: v if rows is None else v[rows] for k, v in features.items()})
    table = {}
    for name, s in scores.items():
        metric = "auc" if features[name].dtype == bool else "r"
        cand = np.argsort(-strength(s, metric), kind="stable")[: (top if rows is None else 4 * top)]
        if rows is not None:  # exact scores of the candidates on every row
            s = np.full(values.shape[1], np.nan)
            s[cand] = score_units(values[:, cand], {name: features[name]})[name]
        order = cand[np.argsort(-strength(s[cand], metric), kind="stable")][:top]
        centre = 0.5 if metric == "auc" else 0.0
        table[name] = {
            "metric": metric,
            "positives": float(features[name].mean()) if metric == "auc" else None,
            "best": [{"unit": names[j], "index": int(j), "score": float(s[j]),
                      "strength": float(max(s[j], 1 - s[j]) if metric == "auc" else abs(s[j])),
                      "sign": 1 if s[j] >= centre else -1} for j in order if np.isfinite(s[j])],
        }
    return Ranking(table)


# --- LSTMVis: select and match ----------------------------------------------------------------
def select(values: np.ndarray, start: int, end: int, threshold: float = 0.3,
           pad_before: int = 1, pad_after: int = 1) -> np.ndarray:
    """Indices of the units on (> threshold) across [start, end) and off (<= threshold) at
    every one of the `pad_before` characters before it and `pad_after` after it."""
    N = values.shape[0]
    if not 0 <= start < end <= N:
        raise UserError(f"the selected span {start}..{end} must lie within 0..{N} and be non-empty")
    on = (values[start:end] > threshold).all(axis=0)  # (U,)
    before = values[max(0, start - pad_before):start]
    after = values[end:end + pad_after]
    off = (before <= threshold).all(axis=0) & (after <= threshold).all(axis=0)  # (U,)
    return np.nonzero(on & off)[0]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the maximal runs of True in a 1-d bool array."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]


def match(values: np.ndarray, units, threshold: float = 0.3, min_on: int | None = None,
          min_length: int = 1, top: int = 50) -> list[dict]:
    """The stretches where at least `min_on` (default: all) of `units` are on together, best
    first (see the module doc): [{"start", "end", "length", "intersection", "union"}, ...]."""
    units = np.asarray(units, dtype=np.int64)
    if units.size == 0:
        return []
    need = units.size if min_on is None else int(min_on)
    if not 1 <= need <= units.size:
        raise UserError(f"min_on must be between 1 and the {units.size} selected units, got {min_on}")
    on_all = values > threshold  # (N, U)
    count = on_all[:, units].sum(axis=1)  # (N,)
    starts, ends = _runs(count >= need)
    keep = (ends - starts) >= min_length
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return []
    # Units on at every character of each run: a minimum over each run (reduceat over the
    # run boundaries; the odd segments are the gaps between runs).
    bounds = np.stack([starts, ends], axis=1).ravel()
    bounds = bounds[bounds < on_all.shape[0]]
    throughout = np.minimum.reduceat(on_all.view(np.uint8), bounds, axis=0)[::2].astype(bool)  # (R, U)
    selected = np.zeros(values.shape[1], dtype=bool)
    selected[units] = True
    inter = throughout[:, selected].sum(axis=1)  # (R,)
    union = units.size + throughout[:, ~selected].sum(axis=1)  # (R,)
    length = ends - starts
    order = np.lexsort((-length, union, -inter))[:top]
    return [{"start": int(starts[i]), "end": int(ends[i]), "length": int(length[i]),
             "intersection": int(inter[i]), "union": int(union[i])} for i in order]
