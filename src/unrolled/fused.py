"""The fused path of a recurrent layer: PyTorch's own sequence kernels over our parameters.

These are the very functions `torch.nn.RNN/LSTM/GRU` call (oneDNN on CPU, cuDNN on GPU):

    rnn   torch._VF.rnn_tanh / rnn_relu     state h
    gru   torch._VF.gru                     state h
    lstm  torch._VF.lstm                    state (h, c)

given every layer's weights in torch.nn's order (`Recurrent.flat_weights`). The cells differ
only in which function runs and in what state they carry, so that is decided here, in one
place, as torch's RNNBase does from its `mode`. A padded batch (`lengths`) is packed, as
torch.nn's callers do, so each row is read only for its own length.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from unrolled.cells import facts


def run_fused(layer, x: Tensor, state, lengths: Tensor | None = None):
    """x (B, T, D_0), state (L * dirs, B, H) (or (h, c)), lengths (B,) or None
    -> (output (B, T, H * dirs), final state), with the layer's dropout between layers."""
    args = (layer.flat_weights(), layer.bias, layer.num_layers, layer.dropout, layer.training,
            layer.bidirectional)
    if lengths is None:
        return _call(layer, x, state, args)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    s = _rows(state, packed.sorted_indices)  # the packed order: longest row first
    data, final = _call(layer, packed.data, s, args, packed.batch_sizes)
    out, _ = pad_packed_sequence(packed._replace(data=data), batch_first=True, total_length=x.shape[1])
    return out, _rows(final, packed.unsorted_indices)  # out (B, T, H * dirs)


def _call(layer, x: Tensor, state, args, batch_sizes: Tensor | None = None):
    """One call of the cell's fused function: batch first, or over packed data with batch_sizes."""
    lead = (x,) if batch_sizes is None else (x, batch_sizes)
    tail = (True,) if batch_sizes is None else ()  # batch_first: only the unpacked form takes it
    name = facts(layer).name
    if name == "lstm":
        out, h, c = torch._VF.lstm(*lead, tuple(state), *args, *tail)
        return out, (h, c)
    if name == "gru":
        return torch._VF.gru(*lead, state, *args, *tail)
    fn = torch._VF.rnn_tanh if layer.nonlinearity == "tanh" else torch._VF.rnn_relu
    return fn(*lead, state, *args, *tail)


def _rows(state, index: Tensor):
    """The batch rows `index` of a state (L * dirs, B, H), or of each part of an LSTM's (h, c)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index.to(s.device)) for s in state)
    return state.index_select(1, index.to(state.device))
