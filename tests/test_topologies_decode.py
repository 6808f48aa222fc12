"""Greedy and beam-search decoding: width 1 is greedy, a wide beam is exhaustive search."""
import itertools

import pytest
import torch

import unrolled
from conftest import B, H, T, V
from unrolled.beam import beam_search, greedy_decode


def model(cell="gru", vocab=V, max_target_length=5, seed=0):
    torch.manual_seed(seed)
    m = unrolled.EncoderDecoder(V, vocab, H, cell, bos_token=1, eos_token=2, max_target_length=max_target_length)
    with torch.no_grad():  # sharpen the untrained model so <eos> comes at varied lengths
        m.head.weight.mul_(4.0)
    return m.double().eval()


def sequence_log_prob(m, x, target: list[int]) -> float:
    """log p(target, <eos> | x) by teacher forcing: the oracle for both decoders."""
    y = torch.tensor([target + [m.eos_token]])
    with torch.no_grad():
        log_p = torch.log_softmax(m(x, y), dim=-1)[0]  # (T, V)
    return float(log_p.gather(1, y[0].unsqueeze(1)).sum())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_is_greedy(cell, seed):
    m = model(cell, seed=seed)
    x, lengths = torch.randint(0, V, (B + 1, T)), torch.tensor([T, 1, 2])
    greedy = greedy_decode(m, x, lengths)
    found, scores = beam_search(m, x, lengths, beam_width=1)
    assert found == greedy
    for b, seq in enumerate(found):
        if len(seq) < m.max_target_length:  # finished with <eos>: its score is log p(seq, <eos>)
            assert scores[b] == pytest.approx(sequence_log_prob(m, x[b:b + 1, :lengths[b]], seq), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wide_beam_finds_the_most_probable_output(seed):
    """With 4 target symbols and at most 3 steps, a beam of 64 keeps every prefix: it must return
    the argmax over all outputs that end in <eos>, found here by enumerating them."""
    m = model(vocab=4, max_target_length=3, seed=seed)
    x = torch.randint(0, V, (1, T))
    words = [list(w) for n in range(3) for w in itertools.product([0, 1, 3], repeat=n)]  # no <eos> inside
    best = max(words, key=lambda w: sequence_log_prob(m, x, w))
    found, scores = beam_search(m, x, beam_width=64)
    assert found[0] == best
    assert scores[0] == pytest.approx(sequence_log_prob(m, x, best), abs=1e-9)


def test_beam_score_is_never_worse_than_greedy_on_finished_outputs():
    m = model(seed=5)
    x = torch.randint(0, V, (4, T))
    greedy = greedy_decode(m, x)
    beams, scores = beam_search(m, x, beam_width=6)
    for b in range(4):
        if len(greedy[b]) < m.max_target_length and len(beams[b]) < m.max_target_length:
            assert scores[b] >= sequence_log_prob(m, x[b:b + 1], greedy[b]) - 1e-9


def test_decoding_stops_at_the_length_limit():
    m = model(max_target_length=2)
    with torch.no_grad():
        m.head.bias.fill_(0.0)
        m.head.bias[2] = -1e9  # <eos> never wins
    x = torch.randint(0, V, (B, T))
    assert all(len(s) == 2 for s in greedy_decode(m, x))
    assert all(len(s) == 3 for s in beam_search(m, x, beam_width=3, max_length=3)[0])


def test_bad_decoding_arguments():
    m = model()
    x = torch.randint(0, V, (B, T))
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(m, x, beam_width=0)
    with pytest.raises(ValueError, match="max_length"):
        greedy_decode(m, x, max_length=0)
