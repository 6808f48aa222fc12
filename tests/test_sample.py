"""Sampling: deterministic per seed, argmax = temperature -> 0 = top-k 1, nucleus against a NumPy
oracle, streaming, priming, many samples in one batch."""
import numpy as np
import pytest
import torch

from unrolled.charlm.config import ModelConfig
from unrolled.errors import UserError
from unrolled.charlm.model import CharLM
from unrolled.charlm.sample import filter_logits, sample
from unrolled.charlm.text import Vocabulary

CHARS = "abcdé\n "  # V = 7


@pytest.fixture
def model():
    torch.manual_seed(3)
    m = CharLM(Vocabulary.from_text(CHARS), ModelConfig(hidden_size=5, num_layers=2, embedding_size=4))
    with torch.no_grad():
        m.head.weight.mul_(8)  # sharper distributions, so different choices show
    return m.eval()


def test_same_seed_same_text(model):
    a = sample(model, length=40, seed=7)
    assert a == sample(model, length=40, seed=7)
    assert a != sample(model, length=40, seed=8)
    assert len(a) == 40 and set(a) <= set(CHARS)


def test_argmax_equals_temperature_to_zero_and_top_k_one(model):
    greedy = sample(model, length=30, argmax=True, prime="ab")
    assert sample(model, length=30, temperature=1e-6, seed=1, prime="ab") == greedy
    assert sample(model, length=30, temperature=0, prime="ab") == greedy
    assert sample(model, length=30, top_k=1, seed=5, prime="ab") == greedy
    assert sample(model, length=30, top_p=1e-9, seed=5, prime="ab") == greedy


def test_length_counts_new_characters_only_and_prime_comes_first(model):
    out = sample(model, length=12, prime="éa b", seed=0)
    assert out.startswith("éa b") and len(out) == 4 + 12
    assert len(sample(model, length=12, prime="éa b", seed=0, include_prime=False)) == 12


def test_streaming_gives_the_same_text(model):
    pieces = []
    out = sample(model, length=25, prime="ab", seed=2, stream=pieces.append)
    assert "".join(pieces) == out and len(pieces) == 26  # the prime, then one piece per character


def test_many_samples_in_one_batch(model):
    outs = sample(model, length=20, seed=4, num_samples=3)
    assert isinstance(outs, list) and len(outs) == 3 and all(len(o) == 20 for o in outs)
    assert len(set(outs)) > 1
    assert sample(model, length=20, seed=4, num_samples=3) == outs


def test_prime_with_unknown_characters(model):
    with pytest.raises(UserError, match=r"--prime contains .*'z' \(U\+007A\)"):
        sample(model, length=5, prime="az")


@pytest.mark.parametrize("kw, flag", [(dict(length=0), "--length"), (dict(temperature=-1.0), "--temperature"),
                                      (dict(temperature=float("nan")), "--temperature"),
                                      (dict(top_k=0), "--top-k"), (dict(top_p=1.5), "--top-p"),
                                      (dict(num_samples=0), "--num-samples")])
def test_options_out_of_range(model, kw, flag):
    with pytest.raises(UserError, match=flag):
        sample(model, **{"length": 5, **kw})


def test_top_k_and_top_p_keep_the_right_sets():
    logits = torch.log(torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]], dtype=torch.float64))
    kept = lambda t: torch.isfinite(t[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [1, 3]
    # NumPy oracle for nucleus sampling: the most likely symbols, in order, until the mass reaches p.
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    for top_p in (0.3, 0.45, 0.69, 0.71, 0.9, 0.96, 1.0):  # away from the ties at 0.4, 0.7, 0.85, 0.95
        order = np.argsort(-p)
        n = int(np.searchsorted(np.cumsum(p[order]), top_p - 1e-12) + 1)
        assert kept(filter_logits(logits, top_p=top_p)) == sorted(order[:n].tolist()), top_p


def test_sampling_follows_the_model_distribution(model):
    """Many one-step samples: the frequencies approach the softmax (a loose, seeded check)."""
    from unrolled.charlm.sample import choose
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.5, 0.0, -2.0]]).expand(4000, -1)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(choose(logits, 1.0, False, None, None, g), minlength=7).double() / 4000
    torch.testing.assert_close(counts, torch.softmax(logits[0].double(), 0), atol=0.03, rtol=0)
    hot = torch.bincount(choose(logits, 0.5, False, None, None, g), minlength=7).double() / 4000
    assert hot[0] > counts[0]  # a lower temperature sharpens


def test_byte_level_model_samples_text(model):
    torch.manual_seed(0)
    m = CharLM(Vocabulary.from_text("héllo".encode("utf-8")), ModelConfig(hidden_size=5, num_layers=1))
    out = sample(m, length=30, seed=0, prime="hé")
    assert out.startswith("hé") and isinstance(out, str)


def test_a_top_p_below_float32_range_keeps_the_most_likely_character():
    """Found by the flag fuzzing: --top-p 1e-300 rounds to 0 in float32 and used to drop everything."""
    from unrolled.charlm.sample import filter_logits

    logits = torch.tensor([[0.5, 2.0, -1.0], [3.0, 1.0, 0.0]])
    kept = filter_logits(logits, top_p=1e-300)
    assert torch.equal(torch.isfinite(kept), torch.tensor([[False, True, False], [True, False, False]]))


def test_perplexity_of_a_diverged_model_is_infinite_not_an_overflow():
    from unrolled.charlm.evaluate import summarize

    assert summarize(1e6, 10)["perplexity"] == float("inf")
