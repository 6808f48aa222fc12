"""Unrolled layers against torch.nn, the readable path against the fast path, and state semantics."""
import pytest
import torch
from torch import nn

import unrolled
from conftest import B, D, H, T

KINDS = {
    "rnn_tanh": (unrolled.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTM, nn.LSTM, {}),
    "gru": (unrolled.GRU, nn.GRU, {}),
}


def make_state(layer, batch=B, requires_grad=False):
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    mk = lambda: torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)  # noqa: E731
    return (mk(), mk()) if isinstance(layer, unrolled.LSTM) else mk()


def assert_same(a, b, atol=1e-12):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=atol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_equals_torch_both_ways(kind, num_layers, bidirectional):
    ours_cls, torch_cls, kw = KINDS[kind]
    ours = ours_cls(D, H, num_layers, bidirectional=bidirectional, **kw).double()
    theirs = torch_cls(D, H, num_layers, batch_first=True, bidirectional=bidirectional, **kw).double()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    x = torch.randn(B, T, D, dtype=torch.float64)
    for src, dst in ((ours, theirs), (theirs, ours)):
        dst.load_state_dict(src.state_dict())
        for state in (None, make_state(ours)):
            expected = theirs(x, state)
            for path in ("fast", "readable"):
                ours.path = path
                out, final = ours(x, state)
                assert_same(out, expected[0])
                assert_same(final, expected[1])
        with torch.no_grad():
            next(src.parameters()).normal_()


@pytest.mark.parametrize("kind", KINDS)
def test_init_matches_torch(kind):
    ours_cls, torch_cls, kw = KINDS[kind]
    torch.manual_seed(3)
    ours = ours_cls(D, H, 2, **kw)
    torch.manual_seed(3)
    theirs = torch_cls(D, H, 2, batch_first=True, **kw)
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_no_bias_equals_torch(kind, bias):
    ours_cls, torch_cls, kw = KINDS[kind]
    ours = ours_cls(D, H, 2, bias=bias, **kw).double()
    theirs = torch_cls(D, H, 2, bias=bias, batch_first=True, **kw).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64)
    for path in ("fast", "readable"):
        ours.path = path
        assert_same(ours(x), theirs(x))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["fast", "readable"])
def test_gradcheck_inputs_state_parameters(kind, path):
    ours_cls, _, kw = KINDS[kind]
    layer = ours_cls(D, H, 2, path=path, **kw).double()
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    state = make_state(layer, requires_grad=True)
    flat_state = state if isinstance(state, tuple) else (state,)
    names = [k for k, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    n = len(flat_state)

    def f(x, *rest):
        st = tuple(rest[:n]) if n == 2 else rest[0]
        out, final = torch.func.functional_call(layer, dict(zip(names, rest[n:])), (x, st))
        return (out, *(final if isinstance(final, tuple) else (final,)))

    assert torch.autograd.gradcheck(f, (x, *flat_state, *params))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["fast", "readable"])
def test_readable_gradients_equal_fast(kind, path):
    ours_cls, _, kw = KINDS[kind]
    layer = ours_cls(D, H, 3, bidirectional=True, **kw).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    grads = {}
    for p in ("fast", "readable"):
        layer.path = p
        layer.zero_grad()
        out, final = layer(x)
        (out.square().sum() + sum(s.sum() for s in (final if isinstance(final, tuple) else (final,)))).backward()
        grads[p] = [q.grad.clone() for q in layer.parameters()]
    for a, b in zip(grads["fast"], grads["readable"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["fast", "readable"])
def test_carried_state_continues_exactly(kind, path):
    """Running T steps at once equals running them in two halves with the state carried."""
    ours_cls, _, kw = KINDS[kind]
    layer = ours_cls(D, H, 2, path=path, **kw).double()
    x = torch.randn(B, 2 * T + 1, D, dtype=torch.float64)
    whole, final = layer(x)
    first, mid = layer(x[:, :T])
    second, final2 = layer(x[:, T:], mid)
    assert_same(torch.cat([first, second], 1), whole)
    assert_same(final2, final)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_result(kind, bidirectional):
    ours_cls, _, kw = KINDS[kind]
    layer = ours_cls(D, H, 2, bidirectional=bidirectional, **kw).double()
    lengths = [T + 1, 1, T]
    x = torch.randn(len(lengths), T + 1, D, dtype=torch.float64)
    state = make_state(layer, batch=len(lengths))
    for path in ("fast", "readable"):
        layer.path = path
        out, final = layer(x, state, lengths=lengths)
        for b, n in enumerate(lengths):
            st = tuple(s[:, b:b + 1] for s in state) if isinstance(state, tuple) else state[:, b:b + 1]
            o1, f1 = layer(x[b:b + 1, :n], st)
            torch.testing.assert_close(out[b:b + 1, :n], o1, rtol=0, atol=1e-12)
            assert torch.all(out[b, n:] == 0)
            f_b = tuple(s[:, b:b + 1] for s in final) if isinstance(final, tuple) else final[:, b:b + 1]
            assert_same(f_b, f1)


def test_lstm_record_is_the_step_by_step_truth():
    layer = unrolled.LSTM(D, H, 2).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    out, (h, c), trace = layer.readable(x, record=True)
    assert len(trace) == 2 and set(trace[0]) == {"h", "c", "i", "f", "g", "o"}
    assert_same(trace[1]["h"], out)
    assert_same(trace[0]["h"][:, -1], h[0])
    assert_same(trace[1]["c"][:, -1], c[1])
    r = trace[0]
    c_prev = torch.cat([torch.zeros(B, 1, H, dtype=torch.float64), r["c"][:, :-1]], 1)
    torch.testing.assert_close(r["c"], r["f"] * c_prev + r["i"] * r["g"])
    torch.testing.assert_close(r["h"], r["o"] * torch.tanh(r["c"]))


def test_gru_and_bidirectional_record_keys():
    _, _, trace = unrolled.GRU(D, H, bidirectional=True).readable(torch.randn(B, T, D), record=True)
    assert set(trace[0]) == {"h", "r", "z", "n", "h_reverse", "r_reverse", "z_reverse", "n_reverse"}
    assert trace[0]["z"].shape == (B, T, H)


def test_dropout_only_between_layers_and_only_in_training():
    layer = unrolled.LSTM(D, H, 3, dropout=0.5).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    layer.eval()
    assert_same(layer(x), layer(x))
    layer.train()
    a, _ = layer(x)
    b, _ = layer(x)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_shapes_name_the_expected_shape(kind):
    ours_cls, _, kw = KINDS[kind]
    layer = ours_cls(D, H, 2, **kw)
    with pytest.raises(ValueError, match=rf"\(B, T, {D}\)"):
        layer(torch.randn(B, T, D + 1))
    with pytest.raises(ValueError, match=rf"\(B, T, {D}\)"):
        layer(torch.randn(T, D))
    bad = torch.randn(1, B, H)
    with pytest.raises(ValueError, match=rf"\(2, {B}, {H}\)"):
        layer(torch.randn(B, T, D), (bad, bad) if kind == "lstm" else bad)
    with pytest.raises(ValueError, match="lengths"):
        layer(torch.randn(B, T, D), lengths=[T + 1, 1])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        unrolled.LSTM(D, 0)
    with pytest.raises(ValueError, match="dropout"):
        unrolled.GRU(D, H, dropout=1.5)
    with pytest.raises(ValueError, match="path"):
        unrolled.RNN(D, H, path="turbo")


def test_detach_state_cuts_the_graph():
    layer = unrolled.LSTM(D, H)
    _, state = layer(torch.randn(B, T, D))
    cut = unrolled.detach_state(state)
    assert all(s.grad_fn is None for s in cut) and all(s.grad_fn is not None for s in state)
    assert all(torch.equal(a, b) for a, b in zip(cut, state))


def test_stacked_form_is_one_matrix_on_the_concatenation():
    """docs/cells.md: h_t^l = tanh(W_l [h_t^{l-1}; h_{t-1}^l] + b_l) with W_l = [W_ih^l | W_hh^l]."""
    layer = unrolled.RNN(D, H, 2).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    out, final = layer(x)
    below = x
    for k in range(2):
        W = torch.cat([getattr(layer, f"weight_ih_l{k}"), getattr(layer, f"weight_hh_l{k}")], dim=1)  # (H, D_k + H)
        b = getattr(layer, f"bias_ih_l{k}") + getattr(layer, f"bias_hh_l{k}")
        h, hs = torch.zeros(B, H, dtype=torch.float64), []
        for t in range(T):
            h = torch.tanh(torch.cat([below[:, t], h], dim=1) @ W.T + b)  # (B, H)
            hs.append(h)
        below = torch.stack(hs, 1)
        torch.testing.assert_close(final[k], h)
    torch.testing.assert_close(out, below)
