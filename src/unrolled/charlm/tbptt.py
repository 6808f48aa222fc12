"""One window of truncated backpropagation through time (Sutskever 2013, ch. 2: every k1
steps, backpropagate k2 steps): the loss of a window, from the carried state.

    h_{1..k1}, s = rnn(x_{1..k1}, s_0);  h_{k1+1..k2} = rnn(x_{k1+1..k2}, s)   (window width k2)
    loss = mean cross-entropy of the last k1 positions (the ones no window scored yet)
    -> (loss, s detached): the next window starts from s, its backward stops there
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unrolled.charlm.model import CharLM
from unrolled.recurrent import detach_state


def tbptt_loss(model: CharLM, x: torch.Tensor, y: torch.Tensor, state, stride: int):
    """Forward one window x, y (B, k2) from the carried `state`.

    -> (mean cross-entropy in nats over the last `stride` = k1 positions, the state after k1
    steps detached for the next window). Backward from the loss reaches all k2 steps of this
    window and stops at `state`, which the caller detached at the previous window edge.
    """
    k2 = x.shape[1]
    k1 = min(stride, k2)
    h1, s_mid = model.rnn(model.embed(x[:, :k1]), state)  # (B, k1, H)
    if k1 < k2:
        h2, _ = model.rnn(model.embed(x[:, k1:]), s_mid)  # (B, k2 - k1, H)
        h = torch.cat([h1, h2], dim=1)[:, k2 - k1:]  # (B, k1, H): only the new positions are scored
    else:
        h = h1  # (B, k2, H)
    logits = model.head(h)  # (B, k1, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, k2 - k1:].reshape(-1))
    # The one place the state is detached: the next window starts from these values, but its
    # backward pass must stop here, or the graph (and memory) would grow with the whole corpus.
    return loss, detach_state(s_mid)


class WindowLoss(nn.Module):
    """`tbptt_loss` as one module call: DistributedDataParallel syncs gradients of what runs
    inside its wrapped module's forward, and a window may run the layer twice (k1 < k2)."""

    def __init__(self, model: CharLM, stride: int):
        super().__init__()
        self.model, self.stride = model, stride

    def forward(self, x, y, state):
        return tbptt_loss(self.model, x, y, state, self.stride)
