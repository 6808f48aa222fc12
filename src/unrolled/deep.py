"""Deeper recurrent networks after Pascanu, Gulcehre, Cho and Bengio (2013),
"How to Construct Deep Recurrent Neural Networks".

A stacked RNN adds depth *between* time steps' layers; these add depth *inside* one step:

    deep input       x'_t = MLP_in(x_t)                                (before the recurrence)
    deep transition  z^0  = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
                     z^j  = tanh(W_j z^{j-1} + b_j)               j = 1 .. depth-2
                     h_t  = tanh(W_L z^{L-1} + b_L + S h_{t-1})       (S: the shortcut, optional)
    deep output      y_t  = MLP_out(h_t)                               (after the recurrence)

They are options of `unrolled.RNN` (`input_depth`, `transition_depth`, `output_depth`,
`shortcut`); this module holds their pieces. The shortcut S h_{t-1} is Pascanu et al.'s DT(S):
it gives the gradient a one-matrix path across the step, which keeps a deep transition trainable.
"""
from __future__ import annotations

from torch import Tensor, nn

from unrolled.cells import NONLINEARITIES


class MLP(nn.Module):
    """x -> act(W_1 x + b_1) -> ... -> act(W_n ... + b_n): `depth` layers, every one `width` wide.

    Used for the deep input and deep output functions; applied to every time step at once.
    """

    def __init__(self, in_size: int, width: int, depth: int, nonlinearity: str = "tanh"):
        super().__init__()
        sizes = [in_size] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.act = NONLINEARITIES[nonlinearity]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = self.act(layer(x))  # (..., width)
        return x


class DeepTransition(nn.Module):
    """The extra layers of one deep transition: depth-1 square layers and an optional shortcut S."""

    def __init__(self, hidden_size: int, depth: int, shortcut: bool, nonlinearity: str = "tanh"):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(depth - 1))
        self.shortcut = nn.Linear(hidden_size, hidden_size, bias=False) if shortcut else None
        self.act = NONLINEARITIES[nonlinearity]

    def forward(self, z: Tensor, h_prev: Tensor) -> Tensor:
        """z: z^0 = tanh(W_ih x + W_hh h_{t-1} + b), (B, H); h_prev: (B, H) -> h_t (B, H)."""
        for j, layer in enumerate(self.layers):
            pre = layer(z)  # (B, H)
            if self.shortcut is not None and j == len(self.layers) - 1:
                pre = pre + self.shortcut(h_prev)
            z = self.act(pre)
        return z


def check_depths(input_depth: int, transition_depth: int, output_depth: int) -> None:
    for name, value, least in (("input_depth", input_depth, 0), ("transition_depth", transition_depth, 1),
                               ("output_depth", output_depth, 0)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
