"""Interventions: holding a unit, on every path, in the batch of controls, and while sampling."""
import numpy as np
import pytest
import torch

from unrolled.charlm.clamp import ClampedStepper, parse_clamp, parse_unit
from unrolled.charlm.config import ModelConfig
from unrolled.charlm.model import CharLM
from unrolled.charlm.sample import sample
from unrolled.charlm.text import Vocabulary
from unrolled.errors import UserError
from unrolled.understand.intervene import intervene, percentile, run_held

TEXT = "int f(x) { return \"a<b\"; } /* c */\n" * 3  # 105 characters


def model_of(kind, layers=2, seed=0):
    torch.manual_seed(seed)
    return CharLM(Vocabulary.from_text(TEXT), ModelConfig(cell=kind, hidden_size=5, num_layers=layers,
                                                          embedding_size=3)).double().eval()


@torch.no_grad()
def own_value(model, unit, at, rows=3):
    """The unit's value after reading TEXT[at], from the readable loop in float64, in a batch of
    as many rows as run_held's (a matrix product's last bit may depend on its batch size)."""
    ids = torch.tensor([model.vocab.encode(TEXT[:at + 1])] * rows)
    _, _, trace = model.rnn.readable(model.embed(ids), None, record=True)
    return float(trace[unit.layer][unit.key][0, -1, unit.index])


@pytest.mark.parametrize("kind,name", [("lstm", "c0:2"), ("lstm", "h1:4"), ("gru", "h0:1"), ("rnn", "h1:0")])
def test_holding_a_unit_at_the_value_it_has_changes_nothing(kind, name):
    model = model_of(kind)
    u = parse_unit(name, model.rnn)
    at = 40
    held = [[(u, own_value(model, u, at))], [(u, own_value(model, u, at) + 0.5)]]
    logp = run_held(model, TEXT, held, span=(at, at + 1), streams=1, path="readable")
    # to the last bits of float64: a matrix product's last bit may depend on its shape and on the
    # machine's kernels (1e-15 apart on an AVX2 CPU, bit for bit on an AVX-512 one)
    np.testing.assert_allclose(logp[0], logp[1], rtol=0, atol=1e-12)
    # the same hold 0.5 away does change the predictions, from the first that sees it on
    first = at + 1 if u.key == "c" else at
    np.testing.assert_allclose(logp[0][:first], logp[2][:first], rtol=0, atol=1e-12)
    assert np.abs(logp[0][first:-1] - logp[2][first:-1]).max() > 1e-6


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("streams,warmup", [(1, 0), (3, 6)])
def test_an_ablation_on_the_fast_paths_equals_the_readable_loop(kind, streams, warmup):
    model = model_of(kind)
    units = [parse_unit(f"{k}{l}:{j}", model.rnn) for k in ("h", "c")[:2 if kind == "lstm" else 1]
             for l, j in ((0, 1), (1, 3))]
    held = [[(u, 0.0)] for u in units] + [[(units[0], 1.5), (units[-1], -0.7)]]
    want = run_held(model, TEXT, held, streams=streams, warmup=warmup, window=8, path="readable")
    for path in ("fast", "kernel"):
        got = run_held(model, TEXT, held, streams=streams, warmup=warmup, window=8, path=path)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.abs(want[1:, :-1] - want[0, :-1]).max(axis=1).min() > 1e-6  # every ablation does something


def test_the_readable_oracle_holds_by_hand():
    """run_held on one stream equals a hand-written loop of lstm steps that replaces h1:3."""
    model = model_of("lstm")
    u = parse_unit("h1:3", model.rnn)
    got = run_held(model, TEXT, [[(u, 0.25)]], span=(10, 30), streams=1, path="readable")[1]
    ids = model.vocab.encode(TEXT)
    state = model.rnn.zero_state(1, model.head.weight)
    want = []
    with torch.no_grad():
        for t in range(len(TEXT) - 1):
            _, state = model.rnn.readable(model.embed(torch.tensor([[ids[t]]])), state)
            if 10 <= t < 30:
                state[0][1, 0, 3] = 0.25
            want.append(float(torch.log_softmax(model.head(state[0][1, 0]), -1)[ids[t + 1]]))
    np.testing.assert_allclose(got[:-1], want, rtol=0, atol=1e-12)


def test_the_batched_controls_equal_each_intervention_alone():
    model = model_of("lstm")
    r = intervene(model, TEXT, "c1:2", "zero", controls=3, seed=1, streams=2, language="c")
    for name, d in zip(r["controls"]["units"], r["controls"]["delta_bpc"]):
        alone = intervene(model, TEXT, name, "zero", controls=0, streams=2)
        assert alone["delta_bpc"] == pytest.approx(d, abs=1e-12)
    assert "c1:2" not in r["controls"]["units"] and len(set(r["controls"]["units"])) == 3
    deltas = r["controls"]["delta_bpc"]
    assert r["controls"]["percentile"] == percentile(r["delta_bpc"], deltas)
    f = r["by_feature"]["in_comment"]
    n_in = f["fraction"] * (len(TEXT) - 1)
    total = f["inside"] * n_in + f["outside"] * (len(TEXT) - 1 - n_in)
    assert total / (len(TEXT) - 1) == pytest.approx(r["delta_bpc"], abs=1e-12)


def test_mean_ablation_holds_the_units_mean():
    model = model_of("gru")
    r = intervene(model, TEXT, "h0:1", "mean", controls=0)
    ids = torch.tensor([model.vocab.encode(TEXT)])
    with torch.no_grad():
        _, _, trace = model.rnn.readable(model.embed(ids), None, record=True)
    assert r["value"] == pytest.approx(float(trace[0]["h"][0, :, 1].mean()), abs=1e-6)


def test_percentile():
    assert percentile(5, [1, 2, 3, 4]) == 100 and percentile(0, [1, 2]) == 0
    assert percentile(2, [1, 2, 3, 4]) == 37.5


def test_clamped_sampling_without_clamps_is_the_plain_sampler_and_a_clamp_changes_it():
    model = model_of("lstm").float()
    plain = sample(model, length=60, seed=3, prime="int ")
    held = sample(model, length=60, seed=3, prime="int ", clamps=[parse_clamp("h1:2=0", model.rnn)])
    step = ClampedStepper(model, [], batch=2)
    step.reset()
    ref = model.stepper(2)
    x = torch.tensor([1, 2])
    for _ in range(5):
        a, b = step.logits(x), ref.logits(x)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        x = a.argmax(-1)
    assert held.startswith("int ") and held != plain


def test_a_clamped_sample_holds_the_unit_at_every_step():
    model = model_of("lstm").float()
    u, v = parse_clamp("c0:4=2.5", model.rnn)
    step = ClampedStepper(model, [(u, v)], batch=3)
    step.reset()
    x = torch.tensor([0, 1, 2])
    for _ in range(4):
        x = step.logits(x).argmax(-1)
        assert torch.all(step.state[1][0, :, 4] == 2.5)


@pytest.mark.parametrize("spec,words", [("c9:1=1", "layer"), ("i0:1=1", "carries"), ("c0:1", "UNIT=VALUE"),
                                        ("c0:1=inf", "finite"), ("x", "unit name")])
def test_bad_clamps_are_one_sentence(spec, words):
    model = model_of("lstm")
    with pytest.raises(UserError, match=words):
        parse_clamp(spec, model.rnn) if "=" in spec or spec == "c0:1" else parse_unit(spec, model.rnn, "--clamp")
