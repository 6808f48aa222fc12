"""Linear probes with control tasks: is a feature written in a layer, across many units?

`search.py` finds the single unit that tracks a feature best. A feature can also be spread over
many units, each weak alone. A linear probe reads all the units of a layer at once:

* yes/no features: logistic regression, p(y | u) = sigmoid(w . u + b), fitted by L-BFGS on
  the mean cross-entropy + l2 |w|^2 / 2, scored by ROC AUC;
* numbers: ridge regression, y = w . u + b minimising the mean squared error + l2 |w|^2,
  solved exactly, scored by Pearson r;

with the units standardised on the fitting part. It is fitted on the first part of the text
(`fit_fraction`, by position) and scored on the rest, beside the best single unit (chosen on the
fitting part, scored on the rest, turned the informative way round).

A probe that scores well may have learnt the task itself rather than read it from the units.
Hewitt and Liang (2019) measure that with a control task: the same probe, fitted and scored the
same way, on labels that depend only on the identity of the character just read, drawn at
random once per character type. What the units say about the character alone scores on it; the
feature's structure beyond the character does not. `selectivity` = probe score - control score.
The control score is the mean over `controls` such draws (each draw is a different labelling).

* numbers: each character type gets a value drawn from the feature's own values;
* yes/no: each character type is yes with probability 1/2. Not with the feature's own rate: for
  a rare feature (1% of the characters are in a string) that rate makes most draws label one
  character type or none, a task read off the current character at AUC 1 by any probe; the
  balanced draw is the hardest labelling by character type, the one that tests what the probe
  can learn from identity alone.
"""
from __future__ import annotations

import numpy as np
import torch

from unrolled.cells import facts
from unrolled.errors import UserError
from unrolled.understand.features import compute as compute_features
from unrolled.understand.lexer import guess_language
from unrolled.understand.record import record
from unrolled.understand.report import sample_positions
from unrolled.understand.search import pearson, roc_auc, score_units, strength


def _standardise(X: np.ndarray, fit: np.ndarray):
    mean = X[fit].mean(0)
    sd = X[fit].std(0)
    sd[sd == 0] = 1.0
    return (X - mean) / sd


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 200) -> np.ndarray:
    """Logistic regression on X (n, U), y (n,) bool -> weights (U + 1,), the bias last."""
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float64))
    w = torch.zeros(X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=iters, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = Xt @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt) + l2 * (w[:-1] ** 2).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def fit_ridge(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Ridge regression on X (n, U), y (n,) -> weights (U + 1,), the bias last (not penalised)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xm, ym = X.mean(0), y.mean()
    Xc = X - xm
    A = Xc.T @ Xc / len(y) + l2 * np.eye(X.shape[1])
    w = np.linalg.solve(A, Xc.T @ (y - ym) / len(y))
    return np.append(w, ym - xm @ w)


def probe_score(X: np.ndarray, y: np.ndarray, fit: np.ndarray, test: np.ndarray, l2: float = 1e-3) -> float:
    """Fit a probe on rows `fit` of X (n, U), score it on rows `test`: AUC for bool y, r otherwise."""
    binary = y.dtype == bool
    if binary and (y[fit].all() or not y[fit].any()):
        return float("nan")  # nothing to learn: one class only
    w = (fit_logistic if binary else fit_ridge)(X[fit], y[fit], l2)
    pred = X[test] @ w[:-1] + w[-1]  # (m,)
    score = roc_auc(pred[:, None], y[test]) if binary else pearson(pred[:, None], y[test])
    return float(score[0])


def best_unit(X: np.ndarray, y: np.ndarray, names, fit: np.ndarray, test: np.ndarray) -> dict:
    """The single unit best on the fitting rows, scored on the test rows the same way round."""
    metric = "auc" if y.dtype == bool else "r"
    s_fit = score_units(X[fit], {"y": y[fit]})["y"]  # (U,)
    j = int(np.argmax(strength(s_fit, metric)))
    s = float(score_units(X[test][:, [j]], {"y": y[test]})["y"][0])
    centre = 0.5 if metric == "auc" else 0.0
    flip = s_fit[j] < centre
    return {"unit": names[j], "sign": -1 if flip else 1, "fit_score": float(s_fit[j]),
            "score": (1 - s if metric == "auc" else -s) if flip else s}


def control_labels(chars: np.ndarray, y: np.ndarray, fit: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt and Liang's control task: one random label per character type, drawn once.

    chars (n,) the character read at each row; yes/no labels are True with probability 1/2 per
    type (the module doc says why), numbers are drawn from y's values on the fitting rows."""
    rng = np.random.default_rng(seed)
    types, inverse = np.unique(chars, return_inverse=True)
    if y.dtype == bool:
        table = rng.random(types.size) < 0.5
    else:
        table = rng.choice(y[fit], size=types.size)
    return table[inverse]


def probe_arrays(X: np.ndarray, y: np.ndarray, chars: np.ndarray, names, fit_fraction: float = 0.5,
                 l2: float = 1e-3, seed: int = 0, controls: int = 5) -> dict:
    """The probe, the best unit and the control task on plain arrays (rows in text order)."""
    n = len(y)
    cut = int(round(n * fit_fraction))
    if not 0 < cut < n:
        raise UserError(f"--fit-fraction {fit_fraction} leaves no rows to fit or to score; give a number in (0, 1)")
    fit, test = np.arange(cut), np.arange(cut, n)
    Z = _standardise(np.asarray(X, dtype=np.float64), fit)
    metric = "auc" if y.dtype == bool else "r"
    score = probe_score(Z, y, fit, test, l2)
    if controls < 1:
        raise UserError(f"--controls must be a positive integer, got {controls}")
    draws = [probe_score(Z, control_labels(chars, y, fit, seed + i), fit, test, l2) for i in range(controls)]
    control = float(np.nanmean(draws)) if not np.isnan(draws).all() else float("nan")
    return {"metric": metric, "units": Z.shape[1], "fit_rows": int(cut), "test_rows": int(n - cut),
            "probe": score, "best_unit": best_unit(Z, y, names, fit, test), "control": control,
            "control_draws": draws, "selectivity": score - control, "l2": l2}


def probe(model, text: str, feature: str, layer: int | None = None, states=None, sample: int = 100_000,
          fit_fraction: float = 0.5, l2: float = 1e-3, seed: int = 0, controls: int = 5,
          language: str = "auto", name: str = "the text") -> dict:
    """A linear probe for `feature` on every unit of `layer` (default: the top layer; `states` the
    quantities, default what the layer carries), with the best single unit and the control task
    (module doc). Rows are `sample` evenly spaced characters; the first `fit_fraction` fit.

        {"feature", "layer", "metric": "auc" | "r", "units", "probe", "best_unit": {...},
         "control", "selectivity", "fit_rows", "test_rows", ...}"""
    rnn = model.rnn
    layer = rnn.num_layers - 1 if layer is None else int(layer)
    if not 0 <= layer < rnn.num_layers:
        raise UserError(f"--layer must be 0..{rnn.num_layers - 1}, got {layer}")
    states = tuple(states or facts(rnn).carries)
    lang = guess_language(text) if language == "auto" else language
    labels = compute_features(text, [feature], lang)
    (fname, y_all), = labels.items()
    rows = sample_positions(len(text), sample)
    rec = record(model, text, keys=states, positions=rows, probs=False, warmup=256, name=name)
    X, names = rec.units(states, layers=[layer])
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)[rows]
    y = y_all[rows]
    if y.dtype == bool and (y.all() or not y.any()):
        raise UserError(f"feature {fname!r} is {'everywhere' if y.all() else 'nowhere'} in {name}; "
                        "give a text where it is sometimes true")
    out = probe_arrays(X, y, chars, names, fit_fraction, l2, seed, controls)
    return {"feature": fname, "layer": layer, "states": list(states), "language": lang, "chars": len(text), **out}
