"""Scores against oracles (pairwise AUC, np.corrcoef), a planted unit found by the search, and
the LSTMVis select and match query on a hand-made matrix."""
import numpy as np
import torch

from unrolled.understand import compute_features, match, pearson, rank_units, record, roc_auc, select
from understand_standin import StandInLM


def pairwise_auc(x, y):
    pos, neg = x[y], x[~y]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (pos.size * neg.size)


def test_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(37, 5)).astype(np.float32)  # many ties
    x[:, 4] = rng.normal(size=37)
    y = rng.random((37, 3)) < 0.4
    got = roc_auc(x, y)  # (F, U)
    assert got.shape == (3, 5)
    for f in range(3):
        for u in range(5):
            assert abs(got[f, u] - pairwise_auc(x[:, u], y[:, f])) < 1e-12
    assert np.isnan(roc_auc(x, np.zeros(37, dtype=bool))).all()


def test_pearson_equals_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(41, 300))  # more units than one block
    y = rng.normal(size=41)
    want = np.array([np.corrcoef(x[:, u], y)[0, 1] for u in range(300)])
    np.testing.assert_allclose(pearson(x, y), want, atol=1e-12)
    assert pearson(np.ones((5, 2)), np.arange(5.0)).tolist() == [0.0, 0.0]


def planted_model(text):
    """A stand-in LSTM with one-hot inputs where cell c0:1 is on inside a '#' comment and cell
    c0:3 counts the characters since the last newline; every other unit is random."""
    model = StandInLM(text, "lstm", embed=len(set(text)), hidden=5, layers=2).double()
    V, H = len(model.vocab), 5
    nl, hash_ = model.vocab.encode("\n#")
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(V))
        w_ih, w_hh, b_ih, b_hh = model.rnn.layer_weights(0)
        for j in (1, 3):
            for gate in range(4):
                row = gate * H + j
                w_hh[row] = 0
                b_ih[row] = b_hh[row] = 0
                w_ih[row] = 20.0  # gates open, candidate +1
            w_ih[H + j, nl] = -20.0  # a newline shuts the forget gate and the input gate
            w_ih[j, nl] = -20.0
        w_ih[1, :] = -20.0  # the comment cell writes only on '#'
        w_ih[1, hash_] = 20.0
    return model


def test_search_finds_planted_units():
    text = "x = 1  # one\nyy = x + 2\n# a whole line\nz = (x, yy)  # pair\nprint(z)\n" * 3
    model = planted_model(text)
    rec = record(model, text, streams=2, warmup=30)  # longer than a line: no stream starts blind
    values, names = rec.units(("h", "c"))
    feats = compute_features(text, ["in_comment", "position_in_line", "in_string"], language="python")
    table = rank_units(values, names, feats, top=3)
    best = table["in_comment"]["best"][0]
    assert best["unit"] in ("c0:1", "h0:1") and table["in_comment"]["metric"] == "auc"  # h = tanh(c) ties
    assert best["score"] > 0.999 and best["sign"] == 1
    best = table["position_in_line"]["best"][0]
    assert best["unit"] == "c0:3" and best["score"] > 0.999
    assert table["in_string"]["best"] == []  # no strings: nothing to score


def test_select_and_match():
    on = np.zeros((14, 4))
    on[2:5, 0] = on[7:11, 0] = 1  # unit 0: on over the selection and over 7..10
    on[2:5, 1] = on[7:11, 1] = 1
    on[:, 2] = 1  # always on: not off around the selection, so never selected
    on[3:5, 3] = 1  # on over part of the selection only
    on[7:11, 3] = 1
    on[12, 0] = on[12, 1] = 1  # a short stretch where exactly the selection fires
    values = on * 0.8 - 0.1
    units = select(values, 2, 5, threshold=0.3)
    assert units.tolist() == [0, 1]
    assert select(values, 2, 5, pad_before=0, pad_after=0).tolist() == [0, 1, 2]
    got = [(m["start"], m["end"], m["intersection"], m["union"]) for m in match(values, units)]
    # all of them with the fewest other units first, longest among equals
    assert got == [(2, 5, 2, 3), (12, 13, 2, 3), (7, 11, 2, 4)]
    assert len(match(values, units, top=1)) == 1
    assert match(values, units, min_length=2)[-1]["start"] == 7


def test_two_pass_ranking_reports_exact_scores():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 40))
    y = x[:, 7] + 0.5 * rng.normal(size=3000) > 0.5
    z = -x[:, 11] + 0.3 * rng.normal(size=3000)
    feats = {"yes": y, "num": z}
    one = rank_units(x, [f"u{j}" for j in range(40)], feats, top=3, screen=None)
    two = rank_units(x, [f"u{j}" for j in range(40)], feats, top=3, screen=500)
    for f in feats:  # the same winner, scored exactly on every row (runners-up are noise here)
        assert one[f]["best"][0]["unit"] == two[f]["best"][0]["unit"]
        assert abs(one[f]["best"][0]["score"] - two[f]["best"][0]["score"]) < 1e-12
    assert one["yes"]["best"][0]["unit"] == "u7" and one["num"]["best"][0]["sign"] == -1
    assert abs(one["yes"]["best"][0]["score"] - roc_auc(x[:, 7:8], y)[0]) < 1e-12
