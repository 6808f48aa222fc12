"""Each cell equals its torch.nn twin: same parameters, same init, same step, same gradients."""
import pytest
import torch
from torch import nn

import unrolled
from conftest import B, D, H

PAIRS = [
    (unrolled.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    (unrolled.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    (unrolled.LSTMCell, nn.LSTMCell, {}),
    (unrolled.GRUCell, nn.GRUCell, {}),
]


def _state(ours, batch=B):
    h = torch.randn(batch, H, dtype=torch.float64)
    if isinstance(ours, unrolled.LSTMCell):
        return (h, torch.randn(batch, H, dtype=torch.float64))
    return h


@pytest.mark.parametrize("ours_cls,torch_cls,kw", PAIRS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_equals_torch_both_ways(ours_cls, torch_cls, kw, bias):
    ours = ours_cls(D, H, bias=bias, **kw).double()
    theirs = torch_cls(D, H, bias=bias, **kw).double()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    x = torch.randn(B, D, dtype=torch.float64)
    for src, dst in ((ours, theirs), (theirs, ours)):
        dst.load_state_dict(src.state_dict())
        for state in (None, _state(ours)):
            a, b = ours(x, state), theirs(x, state)
            a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v, rtol=0, atol=1e-12)
        torch.nn.init.normal_(next(src.parameters()))  # change the source; the next round copies back


@pytest.mark.parametrize("ours_cls,torch_cls,kw", PAIRS)
def test_init_matches_torch(ours_cls, torch_cls, kw):
    torch.manual_seed(7)
    ours = ours_cls(D, H, **kw)
    torch.manual_seed(7)
    theirs = torch_cls(D, H, **kw)
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("ours_cls,torch_cls,kw", PAIRS[:1] + PAIRS[2:])
def test_cell_gradcheck(ours_cls, torch_cls, kw):
    cell = ours_cls(D, H, **kw).double()
    x = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    state = _state(cell)
    state = tuple(s.requires_grad_() for s in state) if isinstance(state, tuple) else state.requires_grad_()
    names = [k for k, _ in cell.named_parameters()]
    n = 2 if isinstance(state, tuple) else 1

    def f(x, *rest):
        st = tuple(rest[:n]) if n == 2 else rest[0]
        return torch.func.functional_call(cell, dict(zip(names, rest[n:])), (x, st))

    flat_state = state if isinstance(state, tuple) else (state,)
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(f, (x, *flat_state, *params))


def test_unbatched_input_like_torch():
    ours, theirs = unrolled.GRUCell(D, H).double(), nn.GRUCell(D, H).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(D, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("cls", [unrolled.RNNCell, unrolled.LSTMCell, unrolled.GRUCell])
def test_wrong_shapes_name_the_expected_shape(cls):
    cell = cls(D, H)
    with pytest.raises(ValueError, match=rf"\(B, {D}\)"):
        cell(torch.randn(B, D + 1))
    bad = torch.randn(B, H + 1)
    with pytest.raises(ValueError, match=rf"\({B}, {H}\)"):
        cell(torch.randn(B, D), (bad, bad) if cls is unrolled.LSTMCell else bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        unrolled.RNNCell(D, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="positive"):
        unrolled.LSTMCell(0, H)
