"""Dynamic evaluation: scored before learned, the update rule against torch.optim.SGD, weights restored."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unrolled.charlm.config import ModelConfig
from unrolled.charlm.dynamic import dynamic_evaluate_tokens, evaluate_dynamic
from unrolled.charlm.evaluate import evaluate_tokens
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary, to_tokens
from unrolled.errors import UserError

TEXT = "the cat sat on the mat; the rat sat on the hat. " * 6


def tiny(cell="lstm", dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    vocab = Vocabulary.from_text(TEXT)
    model = CharLM(vocab, ModelConfig(cell=cell, hidden_size=5, num_layers=2, embedding_size=3))
    return model.to(dtype), to_tokens(vocab.encode(TEXT), len(vocab))


def oracle(model, tokens, segment, lr, decay):
    """The rule written out with torch.optim.SGD on a copy, one stream, state detached per segment."""
    m = copy.deepcopy(model).eval()
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    trained = [p.detach().clone() for p in m.parameters()]
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    state, losses = None, []
    for start in range(0, len(ids) - 1, segment):
        x, y = ids[start:start + segment][None], ids[start + 1:start + 1 + segment][None]
        x = x[:, : y.shape[1]]
        logits, state = m(x, state)
        loss = F.cross_entropy(logits[0], y[0], reduction="sum")
        losses.append(loss.item())
        opt.zero_grad()
        (loss / y.numel()).backward()
        pulls = [decay * (t - p.detach()) for p, t in zip(m.parameters(), trained)]
        opt.step()
        with torch.no_grad():
            for p, pull in zip(m.parameters(), pulls):
                p.add_(pull)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return losses


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dynamic_equals_sgd_oracle_segment_by_segment(cell):
    model, tokens = tiny(cell)
    got = []
    dynamic_evaluate_tokens(model, tokens, batch_size=1, segment=7, lr=0.3, decay=0.05, per_segment=got)
    want = oracle(model, tokens, segment=7, lr=0.3, decay=0.05)
    assert len(got) == len(want) == math.ceil((len(tokens) - 1) / 7)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_each_segment_is_scored_before_it_is_learned():
    """Changing a later segment's characters leaves every earlier segment's score unchanged, and the
    first segment is scored by the trained weights themselves."""
    model, tokens = tiny()
    changed = np.array(tokens).copy()
    changed[60:] = (changed[60:] + 1) % len(model.vocab)  # targets from position 60 on differ
    a, b, static = [], [], []
    dynamic_evaluate_tokens(model, tokens, segment=10, lr=0.5, decay=0.0, per_segment=a)
    dynamic_evaluate_tokens(model, changed, segment=10, lr=0.5, decay=0.0, per_segment=b)
    assert a[:5] == b[:5]  # segments 0..4 predict targets 1..50, all before position 60
    assert a[6] != b[6]
    nats, _ = evaluate_tokens(model, tokens[:11], batch_size=1, seq_len=10)
    assert a[0] == pytest.approx(nats, rel=1e-12)


def test_adaptation_helps_on_repeated_text_and_weights_are_restored():
    model, tokens = tiny(dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    static, _ = evaluate_tokens(model, tokens, batch_size=1, seq_len=20)
    dyn, count = dynamic_evaluate_tokens(model, tokens, segment=10, lr=2.0, decay=0.0)
    assert count == len(tokens) - 1
    assert dyn < 0.9 * static  # the text repeats: learning while reading must pay (measured 0.83)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_evaluate_dynamic_reports_static_beside_it_and_refuses_bad_settings():
    model, _ = tiny(dtype=torch.float32)
    r = evaluate_dynamic(model, TEXT, segment=20, lr=0.5, decay=0.0)
    assert r["gain_bits_per_char"] == pytest.approx(r["static_bits_per_char"] - r["bits_per_char"])
    assert r["gain_bits_per_char"] > 0
    for kwargs, flag in (({"segment": 0}, "--dynamic-segment"), ({"lr": 0.0}, "--dynamic-lr"),
                         ({"decay": 1.0}, "--dynamic-decay")):
        with pytest.raises(UserError, match=flag):
            evaluate_dynamic(model, TEXT, **kwargs)


def test_eval_cli_dynamic_and_split(tmp_path, capsys):
    from unrolled.cli import main
    from unrolled.charlm.trainer import train
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 3)
    train(paths=[str(corpus)], hidden_size=8, num_layers=1, embedding_size=4, batch_size=2, seq_len=16,
          max_steps=3, out=str(tmp_path / "run"), progress=False, seed=0)
    assert main(["eval", str(tmp_path / "run"), str(corpus), "--split", "test", "--dynamic",
                 "--dynamic-segment", "9", "--json", "--threads", "1"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    n = len(TEXT * 3)
    assert row["split"] == "test" and row["chars"] == n - int(round(n * 0.9)) - 1
    assert row["gain_bits_per_char"] == pytest.approx(row["static_bits_per_char"] - row["bits_per_char"])
    assert main(["eval", str(tmp_path / "run"), str(corpus), "--dynamic-lr", "-1", "--dynamic"]) == 2
    assert "--dynamic-lr" in capsys.readouterr().err


def test_progress_hook_counts_every_scored_symbol_of_both_readings():
    model, tokens = tiny()
    static_seen, dynamic_seen = [], []
    _, static_count = evaluate_tokens(model, tokens, batch_size=1, seq_len=7, on_window=static_seen.append)
    _, dynamic_count = dynamic_evaluate_tokens(model, tokens, batch_size=1, segment=7,
                                               on_window=dynamic_seen.append)
    assert sum(static_seen) == static_count == len(tokens) - 1
    assert sum(dynamic_seen) == dynamic_count == len(tokens) - 1
    assert len(dynamic_seen) == math.ceil((len(tokens) - 1) / 7)
