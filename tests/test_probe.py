"""Linear probes with control tasks: the fits against their optimality conditions, a planted
feature recovered, and the control task at chance where the units know nothing."""
import numpy as np
import pytest
import torch

from unrolled.understand.probe import control_labels, fit_logistic, fit_ridge, probe, probe_arrays
from understand_standin import StandInLM


def test_logistic_fit_is_a_minimum():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=300)) > 0
    w = torch.tensor(fit_logistic(X, y, l2=0.1), requires_grad=True)
    Xt, yt = torch.tensor(X), torch.tensor(y, dtype=torch.float64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(Xt @ w[:-1] + w[-1], yt) + 0.1 * (w[:-1] ** 2).sum() / 2
    (g,) = torch.autograd.grad(loss, w)
    assert g.abs().max() < 1e-6


def test_ridge_fit_is_the_least_squares_solution():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    y = X @ [2.0, 0.0, -1.0] + 3 + 0.1 * rng.normal(size=50)
    w = fit_ridge(X, y, l2=0.5)
    # the same problem as one least-squares system: rows sqrt(n l2) I penalise the weights only
    n = len(y)
    A = np.vstack([np.hstack([X, np.ones((n, 1))]), np.hstack([np.sqrt(n * 0.5) * np.eye(3), np.zeros((3, 1))])])
    want = np.linalg.lstsq(A, np.append(y, np.zeros(3)), rcond=None)[0]
    np.testing.assert_allclose(w, want, atol=1e-10)


def planted(n=4000, units=24, seed=0):
    """A feature spread thinly over 16 of 24 noisy units (each alone weak), in runs like a string's."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(n // 20) < 0.3, 20)
    X = rng.normal(size=(n, units))
    X[:, :16] += 0.6 * y[:, None]
    chars = rng.integers(0, 30, size=n)
    return X, y, chars, [f"h0:{j}" for j in range(units)]


def test_a_probe_recovers_a_planted_feature_the_best_unit_misses():
    X, y, chars, names = planted()
    r = probe_arrays(X, y, chars, names)
    assert r["probe"] > 0.9 > 0.7 > r["best_unit"]["score"]
    assert int(r["best_unit"]["unit"].split(":")[1]) < 16  # one of the planted units
    assert abs(r["control"] - 0.5) < 0.05 and r["selectivity"] > 0.35
    # a number spread the same way: ridge and Pearson r
    rng = np.random.default_rng(2)
    v = rng.normal(size=4000)
    Xn = rng.normal(size=(4000, 24))
    Xn[:, :20] += 0.55 * v[:, None]
    rn = probe_arrays(Xn, v.astype(np.float32), chars, names)
    assert rn["metric"] == "r" and rn["probe"] > 0.9 and rn["best_unit"]["score"] < 0.5
    assert abs(rn["control"]) < 0.05


def test_the_control_task_is_at_chance_on_units_that_know_nothing():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 16))
    chars = rng.integers(0, 40, size=3000)
    y = rng.random(3000) < 0.2  # random labels
    r = probe_arrays(X, y, chars, [f"c1:{j}" for j in range(16)], controls=5)
    assert abs(r["probe"] - 0.5) < 0.05 and abs(r["control"] - 0.5) < 0.05


def test_the_control_task_reads_the_character_when_the_units_do():
    """Units that encode the character just read (one-hot) score on the control task: it is a
    function of the character, which is what the control measures."""
    rng = np.random.default_rng(4)
    chars = rng.integers(0, 10, size=2000)
    X = np.eye(10)[chars] + 0.01 * rng.normal(size=(2000, 10))
    r = probe_arrays(X, rng.random(2000) < 0.5, chars, [f"h0:{j}" for j in range(10)])
    assert r["control"] > 0.95


def test_control_labels_depend_only_on_the_character():
    chars = np.array([3, 1, 3, 2, 1, 3] * 50)
    for y in (np.arange(300) % 3 == 0, np.arange(300, dtype=np.float32)):
        c = control_labels(chars, y, np.arange(150), seed=7)
        for ch in (1, 2, 3):
            assert len(set(c[chars == ch].tolist())) == 1
    vals = control_labels(chars, np.arange(300, dtype=np.float32), np.arange(150), seed=7)
    assert set(vals.tolist()) <= set(range(150))  # numbers drawn from the fitting rows' values


def test_probe_on_a_model_end_to_end():
    text = "int f(x) { return \"a<b\"; } /* c */\n" * 12
    torch.manual_seed(0)
    model = StandInLM(text, "lstm").eval()
    r = probe(model, text, "in_string", layer=1, language="c")
    assert r["units"] == 10 and r["fit_rows"] + r["test_rows"] == len(text)
    assert r["selectivity"] == pytest.approx(r["probe"] - r["control"])
    assert 0 <= r["probe"] <= 1 and r["best_unit"]["unit"][:2] in ("h1", "c1")
