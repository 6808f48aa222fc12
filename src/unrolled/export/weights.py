"""What an exported model is made of: the checks that it can be exported, and its tensors.

Both exports (the ONNX file, the page) run the same computation as `CharLM.forward` in eval mode:

    x_t = E[c_t]  (or one-hot),   h_t^l = cell(h_t^{l-1}, h_{t-1}^l)  for l = 0..L-1,
    logits_t = W_hy h_t^{L-1} + b_y

with no dropout between layers (dropout is off at inference). They support the plain stacked
`unrolled.RNN` (tanh or relu), `LSTM` and `GRU` layers, unidirectional, without deep parts; any
other layer (a subclass of those too, whose step may differ) is refused with one sentence rather
than exported as something it is not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unrolled.charlm.model import CharLM
from unrolled.errors import UserError
from unrolled.recurrent import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass
class Layer:
    """One recurrent layer's parameters, float32, in torch.nn's gate order (see recurrent.py)."""
    weight_ih: np.ndarray  # (G*H, D_k)
    weight_hh: np.ndarray  # (G*H, H)
    bias_ih: np.ndarray  # (G*H,), zeros for a layer without bias
    bias_hh: np.ndarray  # (G*H,)


@dataclass
class Exported:
    """A character model's tensors and facts, ready for an exporter."""
    cell: str  # "rnn", "lstm" or "gru"
    nonlinearity: str  # the RNN's "tanh" or "relu" ("tanh" for the gated cells, unused)
    hidden_size: int
    num_layers: int
    embedding: np.ndarray  # (V, D): the embedding, or the identity for one-hot inputs
    one_hot: bool
    layers: list[Layer]
    head_weight: np.ndarray  # (V, H)
    head_bias: np.ndarray  # (V,)
    symbols: list  # the vocabulary's symbols, index order (characters, or byte values)
    byte_level: bool

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)


def check_exportable(model, what: str) -> str:
    """The cell name of a model `what` can export, or a UserError saying why it cannot."""
    if not isinstance(model, CharLM):
        raise UserError(f"{what} exports a character model (unrolled.CharLM), got {type(model).__name__}")
    rnn = model.rnn
    kind = getattr(rnn, "kind", None)
    if kind not in CELLS or type(rnn) is not CELLS[kind]:  # a subclass may step otherwise: not guessed
        raise UserError(f"{what} supports the rnn, lstm and gru cells, and this model's recurrent layer is "
                        f"{type(rnn).__name__}; sample it with unrolled sample instead")
    if rnn.bidirectional:
        raise UserError(f"{what} exports a left-to-right model, and this one is bidirectional, "
                        "which cannot generate text")
    if kind == "rnn" and (rnn.input_depth or rnn.output_depth or rnn.transition_depth > 1):
        raise UserError(f"{what} exports plain recurrent layers, and this RNN has deep input, transition "
                        "or output parts; sample it with unrolled sample instead")
    return kind


def _array(t) -> np.ndarray:
    return t.detach().to("cpu").float().numpy().copy()


def collect(model: CharLM, what: str) -> Exported:
    """The model's tensors as float32 NumPy arrays, after `check_exportable`."""
    kind = check_exportable(model, what)
    rnn = model.rnn
    gh = rnn.weight_ih_l0.shape[0]
    layers = []
    for k in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = rnn.layer_weights(k)
        zeros = np.zeros(gh, dtype=np.float32)
        layers.append(Layer(_array(w_ih), _array(w_hh), _array(b_ih) if b_ih is not None else zeros,
                            _array(b_hh) if b_hh is not None else zeros))
    V = model.vocab_size
    one_hot = model.embedding is None
    table = np.eye(V, dtype=np.float32) if one_hot else _array(model.embedding.weight)
    head_b = _array(model.head.bias) if model.head.bias is not None else np.zeros(V, dtype=np.float32)
    return Exported(kind, getattr(rnn, "nonlinearity", "tanh"), rnn.hidden_size, rnn.num_layers, table, one_hot,
                    layers, _array(model.head.weight), head_b, list(model.vocab.symbols), model.vocab.byte_level)


def write_file(path, data: bytes, flag: str) -> Path:
    """Write `data` at `path` atomically (a temporary name, then a rename): nothing half-written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give the name of the file to write")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {path.parent} does not exist; create it first")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
