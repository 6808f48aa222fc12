"""The unrolled graph, explicit: a vanilla RNN language model in NumPy with a hand-written
backward pass through time. The clearest page in the project, and the oracle that PyTorch
autograd is checked against (tests/test_reference.py).

The model, for inputs x_1..x_T (one-hot, V wide) and targets y_1..y_T (class indices):

    a_t = W_xh x_t + W_hh h_{t-1} + b_h        (H,)
    h_t = tanh(a_t)                             (H,)
    z_t = W_hy h_t + b_y                        (V,)     the scores, y_t = W_hy h_t in the lecture
    p_t = softmax(z_t)                          (V,)
    L   = sum_t L_t,   L_t = -log p_t[y_t]               the total loss is the sum of per-step losses

The same W_xh, W_hh, W_hy serve every step, so every weight gradient is a sum over steps. The
backward pass walks the unrolled graph from t = T down to 1, carrying dL/dh_t backwards:

    dz_t = p_t - onehot(y_t)                    softmax + cross-entropy
    dh_t = W_hy^T dz_t + W_hh^T da_{t+1}        from the output, and from the step after
    da_t = (1 - h_t^2) * dh_t                   back through tanh
    dW_hy += dz_t h_t^T     dW_xh += da_t x_t^T     dW_hh += da_t h_{t-1}^T

Truncated BPTT (`truncated_loss_and_grads`) cuts the sequence into windows of k steps, carries
h forward across every window edge (the forward pass never forgets), but treats the carried h as
a constant: gradients stop at the window's start, so memory and work per update are O(k).

Shapes: all vectors are processed in a batch of one, the lecture's setting. `unrolled.RNN` with
one layer holds the same weights as weight_ih_l0 = W_xh, weight_hh_l0 = W_hh and
bias_ih_l0 + bias_hh_l0 = b_h.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Params:
    """The five parameters of the reference RNN (float64)."""

    W_xh: np.ndarray  # (H, V)
    W_hh: np.ndarray  # (H, H)
    W_hy: np.ndarray  # (V, H)
    b_h: np.ndarray  # (H,)
    b_y: np.ndarray  # (V,)

    NAMES = ("W_xh", "W_hh", "W_hy", "b_h", "b_y")

    @classmethod
    def init(cls, vocab_size: int, hidden_size: int, seed: int = 0, scale: float = 0.1) -> "Params":
        """Small Gaussian weights and zero biases, as min-char-rnn starts."""
        rng = np.random.default_rng(seed)
        V, H = vocab_size, hidden_size
        return cls(rng.normal(0, scale, (H, V)), rng.normal(0, scale, (H, H)), rng.normal(0, scale, (V, H)),
                   np.zeros(H), np.zeros(V))

    def items(self):
        return [(n, getattr(self, n)) for n in self.NAMES]

    def zeros_like(self) -> "Params":
        return Params(*(np.zeros_like(v) for _, v in self.items()))


def one_hot(index: int, size: int) -> np.ndarray:
    x = np.zeros(size)
    x[index] = 1.0
    return x


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(p: Params, inputs, h0: np.ndarray):
    """Run the unrolled graph. inputs: T class indices; h0: (H,).

    Returns (hs, probs): hs[t] is h_t for t = 0..T (hs[0] = h0), probs[t] is p_{t+1} (V,).
    """
    V = p.W_xh.shape[1]
    hs, probs = [h0], []
    for x_index in inputs:
        x = one_hot(x_index, V)  # (V,)
        h = np.tanh(p.W_xh @ x + p.W_hh @ hs[-1] + p.b_h)  # (H,)
        hs.append(h)
        probs.append(softmax(p.W_hy @ h + p.b_y))  # (V,)
    return hs, probs


def loss_and_grads(p: Params, inputs, targets, h0: np.ndarray):
    """Full BPTT over one sequence.

    Returns (loss, grads, h_T, dh0): the summed cross-entropy in nats, the gradients of that loss
    as a Params, the last hidden state, and dL/dh_0 (what a window before this one would receive
    if the graph were not cut).
    """
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"inputs and targets must be non-empty and of equal length, got {len(inputs)} "
                         f"and {len(targets)}")
    V = p.W_xh.shape[1]
    hs, probs = forward(p, inputs, h0)
    loss = -sum(np.log(probs[t][targets[t]]) for t in range(len(inputs)))
    g = p.zeros_like()
    da_next = np.zeros_like(h0)  # dL/da_{t+1}: nothing flows in from after the last step
    for t in reversed(range(len(inputs))):
        dz = probs[t].copy()
        dz[targets[t]] -= 1.0  # (V,)  dL_t/dz_t
        g.W_hy += np.outer(dz, hs[t + 1])
        g.b_y += dz
        dh = p.W_hy.T @ dz + p.W_hh.T @ da_next  # (H,)  from the output and from step t+1
        da = (1.0 - hs[t + 1] ** 2) * dh  # (H,)  through tanh
        g.W_xh += np.outer(da, one_hot(inputs[t], V))
        g.W_hh += np.outer(da, hs[t])
        g.b_h += da
        da_next = da
    dh0 = p.W_hh.T @ da_next
    return float(loss), g, hs[-1], dh0


def truncated_loss_and_grads(p: Params, inputs, targets, h0: np.ndarray, window: int):
    """Truncated BPTT with k1 = k2 = window: the state is carried across window edges but
    gradients stop there. Returns (total loss, summed grads over windows, final h).

    The summed gradient is what one update after the whole sequence would use; a trainer
    updates after every window instead (`train`).
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    total, g, h = 0.0, p.zeros_like(), h0
    for start in range(0, len(inputs), window):
        loss, gw, h, _ = loss_and_grads(p, inputs[start:start + window], targets[start:start + window], h)
        total += loss
        for (_, acc), (_, part) in zip(g.items(), gw.items()):
            acc += part
    return total, g, h


def adagrad_train(p: Params, inputs, targets, steps: int, lr: float = 0.1, clip: float = 5.0) -> list[float]:
    """Train on one sequence with Adagrad and element-wise clipping (min-char-rnn's recipe).

    Returns the loss before each update.
    """
    memory = p.zeros_like()
    losses = []
    for _ in range(steps):
        loss, g, _, _ = loss_and_grads(p, inputs, targets, np.zeros(p.W_hh.shape[0]))
        losses.append(loss)
        for (_, w), (_, dw), (_, m) in zip(p.items(), g.items(), memory.items()):
            np.clip(dw, -clip, clip, out=dw)
            m += dw * dw
            w -= lr * dw / np.sqrt(m + 1e-8)
    return losses


def predict(p: Params, inputs, h0: np.ndarray | None = None) -> list[int]:
    """The most likely next class after each input."""
    h0 = np.zeros(p.W_hh.shape[0]) if h0 is None else h0
    _, probs = forward(p, inputs, h0)
    return [int(np.argmax(q)) for q in probs]
