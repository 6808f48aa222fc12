"""The NumPy reference's hand-written BPTT against finite differences and against autograd."""
import numpy as np
import pytest
import torch

import unrolled
from unrolled import reference

V, H = 7, 5
INPUTS = [0, 3, 6, 2, 2, 5, 1]
TARGETS = [3, 6, 2, 2, 5, 1, 4]


@pytest.fixture
def params():
    return reference.Params.init(V, H, seed=1, scale=0.5)


def numeric_grad(f, w, eps=1e-6):
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        up = f()
        w[i] = old - eps
        down = f()
        w[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def test_bptt_equals_finite_differences(params):
    h0 = np.random.default_rng(2).normal(size=H)
    loss, g, _, dh0 = reference.loss_and_grads(params, INPUTS, TARGETS, h0)
    f = lambda: reference.loss_and_grads(params, INPUTS, TARGETS, h0)[0]  # noqa: E731
    for name, w in params.items():
        np.testing.assert_allclose(getattr(g, name), numeric_grad(f, w), rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(dh0, numeric_grad(f, h0), rtol=1e-6, atol=1e-8)


def test_total_loss_is_the_sum_of_step_losses(params):
    h0 = np.zeros(H)
    _, probs = reference.forward(params, INPUTS, h0)
    per_step = [-np.log(p[y]) for p, y in zip(probs, TARGETS)]
    assert reference.loss_and_grads(params, INPUTS, TARGETS, h0)[0] == pytest.approx(sum(per_step), rel=1e-12)


def torch_twin(p: reference.Params):
    """unrolled.RNN + a linear head holding the reference's weights (b_h all in bias_ih)."""
    rnn = unrolled.RNN(V, H).double()
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p.W_xh))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p.W_hh))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p.b_h))
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(p.W_hy))
        head.bias.copy_(torch.from_numpy(p.b_y))
    return rnn, head


def torch_grads(rnn, head):
    return {"W_xh": rnn.weight_ih_l0.grad, "W_hh": rnn.weight_hh_l0.grad, "W_hy": head.weight.grad,
            "b_h": rnn.bias_ih_l0.grad, "b_y": head.bias.grad}


@pytest.mark.parametrize("path", ["fast", "readable"])
def test_bptt_equals_autograd(params, path):
    rnn, head = torch_twin(params)
    rnn.path = path
    h0 = np.random.default_rng(3).normal(size=H)
    loss, g, h_last, dh0 = reference.loss_and_grads(params, INPUTS, TARGETS, h0)
    x = torch.nn.functional.one_hot(torch.tensor([INPUTS]), V).double()  # (1, T, V)
    state = torch.from_numpy(h0).view(1, 1, H).requires_grad_()
    out, final = rnn(x, state)
    t_loss = torch.nn.functional.cross_entropy(head(out)[0], torch.tensor(TARGETS), reduction="sum")
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(h_last, final.detach().view(H).numpy(), rtol=1e-12)
    for name, tg in torch_grads(rnn, head).items():
        np.testing.assert_allclose(getattr(g, name), tg.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    # The second bias receives the same gradient as the first: the two only ever appear summed.
    np.testing.assert_allclose(g.b_h, rnn.bias_hh_l0.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0, state.grad.view(H).numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", [1, 2, 3, 7])
def test_truncated_bptt_equals_autograd_with_detach(params, window):
    """Carry h across window edges, cut the graph there: the TBPTT loop every trainer writes."""
    rnn, head = torch_twin(params)
    loss, g, h_last = reference.truncated_loss_and_grads(params, INPUTS, TARGETS, np.zeros(H), window)
    x = torch.nn.functional.one_hot(torch.tensor([INPUTS]), V).double()
    y = torch.tensor(TARGETS)
    state, total = None, 0.0
    for s in range(0, len(INPUTS), window):
        out, state = rnn(x[:, s:s + window], state)
        step_loss = torch.nn.functional.cross_entropy(head(out)[0], y[s:s + window], reduction="sum")
        step_loss.backward()  # gradients accumulate over windows, as the summed reference grads
        total += step_loss.item()
        state = unrolled.detach_state(state)  # the window edge: keep the value, cut the graph
    assert loss == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(h_last, state.view(H).numpy(), rtol=1e-12)
    for name, tg in torch_grads(rnn, head).items():
        np.testing.assert_allclose(getattr(g, name), tg.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_truncation_changes_gradients_but_not_the_forward(params):
    full_loss, full_g, full_h, _ = reference.loss_and_grads(params, INPUTS, TARGETS, np.zeros(H))
    loss, g, h = reference.truncated_loss_and_grads(params, INPUTS, TARGETS, np.zeros(H), 2)
    assert loss == pytest.approx(full_loss, rel=1e-12)
    np.testing.assert_allclose(h, full_h, rtol=1e-12)
    assert not np.allclose(g.W_hh, full_g.W_hh)  # the cut gradient paths are really gone
    np.testing.assert_allclose(g.W_hy, full_g.W_hy, rtol=1e-12)  # W_hy needs no path through time


def test_bad_arguments():
    p = reference.Params.init(V, H)
    with pytest.raises(ValueError, match="equal length"):
        reference.loss_and_grads(p, [0, 1], [1], np.zeros(H))
    with pytest.raises(ValueError, match="window"):
        reference.truncated_loss_and_grads(p, [0], [1], np.zeros(H), 0)
