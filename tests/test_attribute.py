"""Attribution over time: integrated gradients add up, gradient x input is the derivative, and the
memory span is the gradient's size, each against an oracle on a tiny float64 model."""
import numpy as np
import pytest
import torch

from unrolled.understand.attribute import attribute, half_life, memory_span
from understand_standin import StandInLM

TEXT = "int f(x) { return \"a<b\"; } /* c */\n" * 3  # 105 characters


def model_of(kind, seed=0):
    torch.manual_seed(seed)
    return StandInLM(TEXT, kind, embed=3, hidden=5).double().eval()


def log_p(model, ids, a, x, target):
    """F: log p(target) after reading ids[:a] and then the encodings x (W, D)."""
    with torch.no_grad():
        _, state = model.rnn(model.embed(torch.tensor([ids[:a]]))) if a else (None, None)
        h, _ = model.rnn(x.unsqueeze(0), state)
        return float(torch.log_softmax(model.head(h[0, -1]), -1)[target])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("baseline", [" ", "zero"])
def test_integrated_gradients_add_up_to_the_change(kind, baseline):
    model = model_of(kind)
    r = attribute(model, TEXT, 70, window=25, steps=64, baseline=baseline)
    assert r["completeness_error"] < 0.01
    assert sum(e["ig"] for e in r["attributions"]) == pytest.approx(r["ig_sum"])
    # F at the text and at the baseline, computed here from the state the text carries to the window
    ids = model.vocab.encode(TEXT)
    a, b = r["window"]
    assert (a, b) == (46, 71) and [e["offset"] for e in r["attributions"]] == list(range(25))
    x = model.embed(torch.tensor(ids[a:b])).detach()
    base = torch.zeros_like(x) if baseline == "zero" else model.embed(torch.tensor([ids[TEXT.index(" ")]] * 25)).detach()
    target = ids[71]
    assert r["logp"] == pytest.approx(log_p(model, ids, a, x, target), abs=1e-12)
    assert r["baseline_logp"] == pytest.approx(log_p(model, ids, a, base, target), abs=1e-12)
    # more steps, smaller error (the trapezoid rule converges)
    fine = attribute(model, TEXT, 70, window=25, steps=512, baseline=baseline)
    assert fine["completeness_error"] <= r["completeness_error"] + 1e-12


def test_gradient_times_input_is_the_finite_difference():
    model = model_of("lstm")
    r = attribute(model, TEXT, 50, window=6, steps=8, target="r")
    ids = model.vocab.encode(TEXT)
    a, b = r["window"]
    x = model.embed(torch.tensor(ids[a:b])).detach()
    tgt = model.vocab.encode("r")[0]
    eps = 1e-6
    for k, e in enumerate(reversed(r["attributions"])):  # oldest first, as x
        up, down = x.clone(), x.clone()
        up[k] *= 1 + eps
        down[k] *= 1 - eps
        fd = (log_p(model, ids, a, up, tgt) - log_p(model, ids, a, down, tgt)) / (2 * eps)
        assert e["grad_x_input"] == pytest.approx(fd, abs=1e-7)


def test_memory_span_is_the_gradient_size_by_finite_differences():
    model = model_of("gru")
    K = 6
    s = memory_span(model, TEXT, "h1:2", max_offset=K, samples=1)
    t = K + 1  # one sample: the first character with K before it
    ids = model.vocab.encode(TEXT)
    x = model.embed(torch.tensor(ids[:t + 1])).detach()  # the whole text up to t, from zeros

    def unit(xx):
        with torch.no_grad():
            _, _, trace = model.rnn.readable(xx.unsqueeze(0), None, record=True)
        return float(trace[1]["h"][0, -1, 2])

    eps = 1e-6
    for k in range(K + 1):
        g = []
        for d in range(x.shape[1]):
            up, down = x.clone(), x.clone()
            up[t - k, d] += eps
            down[t - k, d] -= eps
            g.append((unit(up) - unit(down)) / (2 * eps))
        assert s["gradient"][k] == pytest.approx(float(np.linalg.norm(g)), abs=1e-7)


def test_half_life():
    assert half_life([1, 2, 4, 3, 1.9, 2.5]) == 4
    assert half_life([4, 3, 2.5]) is None
    assert half_life([5, 1]) == 1
