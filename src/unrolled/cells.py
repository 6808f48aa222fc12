"""One step of each recurrent cell.

Shapes: B batch, D input size, H hidden size, G gates (RNN 1, LSTM 4, GRU 3).

Each cell is two things: a pure step function (`rnn_step`, `lstm_step`, `gru_step`) that takes
the weights as arguments, so the unrolling loop in `recurrent.py` can call it with any layer's
parameters, and a module (`RNNCell`, `LSTMCell`, `GRUCell`) that owns the weights under the same
names, shapes, gate order and initialisation as `torch.nn.RNNCell/LSTMCell/GRUCell`, so a
`state_dict` moves between the two unchanged (tests/test_cells.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


@dataclass(frozen=True)
class CellFacts:
    """What the rest of the package needs to know about a cell, in one place (as torch's RNNBase
    derives gate_size from its mode)."""

    name: str                       # "rnn", "lstm", "gru", "mingru", "minlstm"
    num_gates: int                  # G: weight_ih has G * H rows, as torch.nn
    gates: tuple[str, ...]          # the gates in the order their rows are stacked in weight_ih / weight_hh
    sigmoid_gates: tuple[str, ...]  # the gates that pass a sigmoid, so live in (0, 1) and can saturate
    state_keys: tuple[str, ...]     # what a recording of the readable path can hold, per step
    carries: tuple[str, ...]        # the state carried from one step to the next
    hidden_weights: bool = True     # whether the gates read h_{t-1} through weight_hh (not the minimal cells)
    unbounded: tuple[str, ...] = () # recorded quantities with no fixed range (the LSTM's c, the minimal cells' h)


CELLS: dict[str, CellFacts] = {
    "rnn": CellFacts("rnn", 1, (), (), ("h",), ("h",)),
    "lstm": CellFacts("lstm", 4, ("i", "f", "g", "o"), ("i", "f", "o"), ("h", "c", "i", "f", "g", "o"), ("h", "c"),
                      unbounded=("c",)),
    "gru": CellFacts("gru", 3, ("r", "z", "n"), ("r", "z"), ("h", "r", "z", "n"), ("h",)),
    # unrolled.minimal (Feng et al. 2024): gates from the input alone, so no weight_hh; the
    # candidate passes pos(v) (v + 1/2 or sigmoid), so h and the candidate are positive, unbounded
    "mingru": CellFacts("mingru", 2, ("z", "n"), ("z",), ("h", "z", "n"), ("h",), False, ("h", "n")),
    "minlstm": CellFacts("minlstm", 3, ("f", "i", "g"), ("f", "i"), ("h", "f", "i", "g"), ("h",), False, ("h", "g")),
}


def facts(cell) -> CellFacts:
    """The facts of a cell given by name ("lstm") or by a layer or model with a `.kind` (our cells
    and layers, any subclass of them) or a `.cell` (the topologies) naming one."""
    if isinstance(cell, CellFacts):
        return cell
    name = cell
    if not isinstance(cell, str):
        name = getattr(cell, "kind", None)
        if name not in CELLS:
            name = getattr(cell, "cell", name)
    if isinstance(name, str) and name in CELLS:
        return CELLS[name]
    what = repr(cell) if isinstance(cell, str) else f"{type(cell).__name__} with kind {name!r}"
    raise ValueError(f"unknown cell: {what}; the cells are {', '.join(CELLS)}")


def _affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.linear(x, weight, bias)  # (B, G*H)


def rnn_step(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)   (or relu instead of tanh).

    x: (B, D), h: (B, H) -> h': (B, H).
    """
    pre = _affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh)  # (B, H)
    return NONLINEARITIES[nonlinearity](pre)


def lstm_step(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step, gate rows stacked i, f, g, o as in torch.nn.LSTM.

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      input gate
        f  = sigmoid(W_if x + b_if + W_hf h + b_hf)      forget gate
        g  = tanh   (W_ig x + b_ig + W_hg h + b_hg)      candidate
        o  = sigmoid(W_io x + b_io + W_ho h + b_ho)      output gate
        c' = f * c + i * g
        h' = o * tanh(c')

    x: (B, D), state: ((B, H), (B, H)) -> ((h', c'), gates) where gates maps i, f, g, o to (B, H).
    """
    h, c = state
    pre = _affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = pre.chunk(4, dim=1)  # each (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g  # (B, H)
    h_new = o * torch.tanh(c_new)  # (B, H)
    return (h_new, c_new), {"i": i, "f": f, "g": g, "o": o}


def gru_step(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One GRU step, gate rows stacked r, z, n as in torch.nn.GRU.

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      reset gate
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)      update gate
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))   candidate
        h' = (1 - z) * n + z * h

    x: (B, D), h: (B, H) -> (h', gates) where gates maps r, z, n to (B, H).
    """
    xr, xz, xn = _affine(x, weight_ih, bias_ih).chunk(3, dim=1)  # each (B, H)
    hr, hz, hn = _affine(h, weight_hh, bias_hh).chunk(3, dim=1)  # each (B, H)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h_new = (1 - z) * n + z * h  # (B, H)
    return h_new, {"r": r, "z": z, "n": n}


def init_uniform_(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order.

    Registering the parameters in torch.nn's order and drawing them in that order means the same
    seed gives the same weights as torch.nn (tests/test_cells.py::test_init_matches_torch).
    """
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class _CellBase(nn.Module):
    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = {"device": device, "dtype": dtype}
        gh = facts(self).num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size, **kw))  # (G*H, D)
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size, **kw))  # (G*H, H)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh, **kw))  # (G*H,)
            self.bias_hh = nn.Parameter(torch.empty(gh, **kw))  # (G*H,)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_uniform_(self, self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _check(self, x: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor, bool]:
        """Accept (B, D) or unbatched (D,) input as torch.nn's cells do; return batched tensors."""
        batched = x.dim() == 2
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.input_size}) or "
                f"({self.input_size},), got {tuple(x.shape)}"
            )
        if not batched:
            x = x.unsqueeze(0)
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h = h if batched else h.unsqueeze(0)
            if h.shape != (x.shape[0], self.hidden_size):
                raise ValueError(
                    f"{type(self).__name__} expects a hidden state of shape ({x.shape[0]}, {self.hidden_size}), "
                    f"got {tuple(h.shape) if batched else tuple(h.shape[1:])}"
                )
        return x, h, batched


class RNNCell(_CellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)   (nonlinearity "tanh" or "relu").

    The vanilla cell. Same constructor, parameters and initialisation as torch.nn.RNNCell:
    weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,), all ~ U(-1/sqrt(H), 1/sqrt(H)).
    forward(x (B, D), h (B, H) or None) -> h' (B, H).
    """

    kind = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, h, batched = self._check(x, h)
        h = rnn_step(x, h, *self._weights(), nonlinearity=self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (W_ih x + b_ih + W_hh h + b_hh), split in 4;
    c' = f * c + i * g;  h' = o * tanh(c').

    Same constructor, parameters, gate order (i, f, g, o) and initialisation as torch.nn.LSTMCell:
    weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,).
    forward(x (B, D), (h, c) or None) -> (h', c'), each (B, H).
    """

    kind = "lstm"

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = (None, None) if state is None else state
        x, h, batched = self._check(x, h)
        _, c, _ = self._check(x if batched else x.squeeze(0), c)
        (h, c), _ = lstm_step(x, (h, c), *self._weights())
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z});
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h.

    Same constructor, parameters, gate order (r, z, n) and initialisation as torch.nn.GRUCell:
    weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).
    forward(x (B, D), h (B, H) or None) -> h' (B, H).
    """

    kind = "gru"

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, h, batched = self._check(x, h)
        h, _ = gru_step(x, h, *self._weights())
        return h if batched else h.squeeze(0)
