"""The topologies that read a whole input and answer from its states: one-to-one, many-to-one,
many-to-many (aligned). No output is fed back, so every step's input is known in advance and
the recurrent layer runs once over the batch (its fused or kernel path).
"""
from __future__ import annotations

from torch import Tensor, nn

from unrolled.recurrent import LAYERS
from unrolled.topologies.parts import (Dense, check_lengths, make_encoding, make_head, reduce_loss, step_mask,
                                       top_state, zero_padding)

POOLS = ("last", "mean", "max")


class _Topology(nn.Module):
    """Encoding -> recurrent layer -> head, with the checks every topology shares."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int, cell: str = "lstm",
                 num_layers: int = 1, encoding: str = "dense", embedding_dim: int | None = None,
                 head: str = "classify", dropout: float = 0.0, bidirectional: bool = False,
                 max_length: int | None = None, path: str = "auto"):
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        self.cell, self.max_length = cell, max_length
        self.encode = make_encoding(encoding, input_size, embedding_dim)
        self.rnn = LAYERS[cell](self.encode.output_size, hidden_size, num_layers, dropout=dropout,
                                bidirectional=bidirectional, path=path)
        self.head = make_head(head, self.rnn.output_size, output_size)

    def _steps(self, x: Tensor) -> tuple[int, int]:
        dense = isinstance(self.encode, Dense)
        if x.dim() != (3 if dense else 2):
            want = "(B, T, D) vectors" if dense else "(B, T) token ids"
            raise ValueError(f"{type(self).__name__} expects {want}, got shape {tuple(x.shape)}")
        return x.shape[0], x.shape[1]

    def predict(self, *args, **kwargs) -> Tensor:
        """Class ids (argmax) for a classification head, values for a regression head."""
        return self.head.predict(self(*args, **kwargs))


# --- many-to-one, one-to-one, many-to-many ------------------------------------------------------
class ManyToOne(_Topology):
    """Read a whole sequence, answer once:

        h_t = cell(x_t, h_{t-1}),  t = 1..T_b        y = head(h_{T_b})          (pool="last")

    where T_b is row b's own length. Bidirectional: y = head([h_fwd_{T_b}; h_rev_1]), the
    backward direction's state after it has read the sequence from its end to its start.
    pool="mean" or "max" answers from the mean or the elementwise max of h_1..h_{T_b} instead
    (every step then has a short gradient path to the loss, which helps when the evidence may sit
    anywhere in a long sequence). x (B, T, D) or ids (B, T) -> (B, C) logits or (B, K) values.
    """

    def __init__(self, input_size, output_size, hidden_size, cell="lstm", pool: str = "last", **kw):
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        super().__init__(input_size, output_size, hidden_size, cell, **kw)
        self.pool = pool

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out, final = self.rnn(self.encode(x), state, lengths)  # out (B, T, H * dirs), final (L * dirs, B, H)
        if self.pool == "last":
            return self.head(top_state(self.rnn, final))  # (B, C)
        mask = step_mask(lengths, T, out).unsqueeze(2)  # (B, T, 1)
        if self.pool == "mean":
            summary = (out * mask).sum(1) / mask.sum(1)  # (B, H * dirs)
        else:
            summary = out.masked_fill(mask == 0, float("-inf")).amax(1)  # (B, H * dirs)
        return self.head(summary)  # (B, C)

    def loss(self, x: Tensor, target: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        return reduce_loss(self.head.loss_terms(self(x, lengths), target), None, reduction)


class OneToOne(ManyToOne):
    """No recurrence: one step of the cell from the zero state, then the head:

        h = cell(x, 0)  (for the RNN: h = tanh(W_ih x + b_ih + b_hh))      y = head(h)

    W_hh never matters (it multiplies h_0 = 0), so this is a feed-forward network built from the
    very same layer: the baseline that shows what the recurrence adds. x (B, D) or ids (B,) ->
    (B, C) or (B, K).
    """

    def __init__(self, input_size, output_size, hidden_size, cell="rnn", **kw):
        if kw.get("bidirectional"):
            raise ValueError("OneToOne has a single step, so bidirectional means nothing; leave it False")
        super().__init__(input_size, output_size, hidden_size, cell, **kw)

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        want = 2 if isinstance(self.encode, Dense) else 1
        if x.dim() != want:
            shape = "(B, D) vectors" if want == 2 else "(B,) token ids"
            raise ValueError(f"OneToOne expects {shape}, got shape {tuple(x.shape)}")
        return super().forward(x.unsqueeze(1))  # one step: (B, 1, D) -> (B, C)


class ManyToMany(_Topology):
    """Aligned: one output for every input, y_t = head(h_t). Bidirectional: h_t = [h_fwd_t; h_rev_t],
    so a label may depend on what follows as well as on what came before.

    x (B, T, D) or ids (B, T) -> (B, T, C) or (B, T, K); padded steps give zeros before the head
    and are left out of the loss.
    """

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out, _ = self.rnn(self.encode(x), state, lengths)  # (B, T, H * dirs)
        return self.head(out)  # (B, T, C)

    def loss(self, x: Tensor, target: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out = self(x, lengths)  # (B, T, C)
        target = zero_padding(target, lengths, self.head)
        return reduce_loss(self.head.loss_terms(out, target), step_mask(lengths, T, out), reduction)
