"""The character language model: an input encoding, a recurrent layer, a softmax output.

    x_t = E[c_t]                      (a learned embedding, or one-hot: E = I)   (B, T, D)
    h_t = recurrent(x_t, h_{t-1})     (unrolled RNN, LSTM or GRU, L layers)       (B, T, H)
    p(c_{t+1} | c_1..c_t) = softmax(W_hy h_t + b_y)                              (B, T, V)

trained to minimise the cross-entropy -log p(c_{t+1}), reported in bits per character
(nats / ln 2). The model carries its vocabulary and config, so a checkpoint rebuilds it alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.config import ModelConfig
from unrolled.recurrent import LAYERS, LSTM
from unrolled.text import Vocabulary


class CharLM(nn.Module):
    """idx (B, T) long -> logits (B, T, V), with the recurrent state in and out."""

    def __init__(self, vocab: Vocabulary, config: ModelConfig | None = None):
        super().__init__()
        self.vocab = vocab
        self.config = config = config or ModelConfig()
        V = len(vocab)
        D = config.embedding_size or V  # one-hot inputs are V wide
        self.embedding = nn.Embedding(V, config.embedding_size) if config.embedding_size else None
        self.rnn = LAYERS[config.cell](D, config.hidden_size, num_layers=config.num_layers,
                                       dropout=config.dropout)
        self.head = nn.Linear(config.hidden_size, V)
        if isinstance(self.rnn, LSTM) and config.forget_bias:
            self._set_forget_bias(config.forget_bias)

    def _set_forget_bias(self, value: float) -> None:
        # The forget gate's rows are the second quarter (i, f, g, o). Only bias_ih gets the value
        # and bias_hh is zeroed there, so the effective bias b_if + b_hf equals it exactly: the
        # cell starts by remembering (Gers, Schmidhuber and Cummins 2000).
        H = self.rnn.hidden_size
        with torch.no_grad():
            for k in range(self.rnn.num_layers):
                self.rnn.layer_weights(k)[2][H:2 * H].fill_(value)
                self.rnn.layer_weights(k)[3][H:2 * H].zero_()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def embed(self, idx: Tensor) -> Tensor:
        """idx (B, T) long -> the input encoding (B, T, D): embedding rows, or one-hot vectors."""
        if self.embedding is not None:
            return self.embedding(idx)  # (B, T, E)
        return F.one_hot(idx, self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)

    def forward(self, idx: Tensor, state=None):
        """idx (B, T) -> (logits (B, T, V), state after the last step)."""
        h, state = self.rnn(self.embed(idx), state)  # (B, T, H)
        return self.head(h), state  # (B, T, V)

    def zero_state(self, batch: int):
        return self.rnn.zero_state(batch, self.head.weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"vocab={len(self.vocab)}"
