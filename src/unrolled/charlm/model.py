"""The character language model: an input encoding, a recurrent layer, a softmax output.

    x_t = E[c_t]                      (a learned embedding, or one-hot: E = I)   (B, T, D)
    h_t = recurrent(x_t, h_{t-1})     (RNN, LSTM, GRU, MinGRU or MinLSTM, L layers) (B, T, H)
    p(c_{t+1} | c_1..c_t) = softmax(W_hy h_t + b_y)                              (B, T, V)

trained to minimise the cross-entropy -log p(c_{t+1}), reported in bits per character
(nats / ln 2). The model carries its vocabulary and config, so a checkpoint rebuilds it alone,
and owns its stepping for generation (`stepper`: one character in, the next logits out), as
torch-rnn's LanguageModel owns its sampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.charlm.config import ModelConfig
from unrolled.kernels import RecurrentStep
from unrolled.minimal import LAYERS as MINIMAL_LAYERS, MinLSTM
from unrolled.recurrent import LAYERS, LSTM
from unrolled.charlm.text import Vocabulary


class CharLM(nn.Module):
    """idx (B, T) long -> logits (B, T, V), with the recurrent state in and out."""

    def __init__(self, vocab: Vocabulary, config: ModelConfig | None = None):
        super().__init__()
        self.vocab = vocab
        self.config = config = config or ModelConfig()
        V = len(vocab)
        D = config.embedding_size or V  # one-hot inputs are V wide
        self.embedding = nn.Embedding(V, config.embedding_size) if config.embedding_size else None
        self.rnn = {**LAYERS, **MINIMAL_LAYERS}[config.cell](D, config.hidden_size, num_layers=config.num_layers,
                                                            dropout=config.dropout)
        self.head = nn.Linear(config.hidden_size, V)
        if isinstance(self.rnn, LSTM) and config.forget_bias:
            self._set_forget_bias(config.forget_bias)
        if isinstance(self.rnn, MinLSTM) and config.forget_bias:
            with torch.no_grad():  # f's rows come first (f, i, g): f' = f / (f + i) starts above 1/2
                for k in range(self.rnn.num_layers):
                    self.rnn.layer_weights(k)[1][:config.hidden_size].fill_(config.forget_bias)

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

    def stepper(self, batch: int = 1, state=None) -> CharStepper:
        """A stepper for generation: `logits(idx (batch,))` -> (batch, V), starting from `state`
        (the layer's, as `forward` returns it; None for zeros) and carrying it inside."""
        step = CharStepper(self, batch)
        step.reset(state)
        return step

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"vocab={len(self.vocab)}"


class CharStepper:
    """Generation one character at a time: idx (B,) long -> logits (B, V) of the next one.

        h_t = recurrent step(E[c_t], h_{t-1}),   logits_t = h^{L-1}_t W_hy^T + b_y

    For a unidirectional layer without deep parts the step runs on `kernels.RecurrentStep` (the
    embedding folded into the first layer's input product, every buffer allocated once, each
    cell's element-wise math one compiled call) and the head writes into a buffer: 2-3x faster
    than a step through the model at batch 1 on the CPU (docs/performance.md). Other layers step
    through the model. `logits(idx)` equals `model(idx[:, None], state)` step by step
    (tests/test_kernels.py); its result is a buffer the next call overwrites.
    """

    def __init__(self, model: CharLM, batch: int = 1):
        self.model = model
        self.cell = None
        self._state = None  # the layer's state when stepping through the model
        if RecurrentStep.supports(model.rnn):
            p = model.head.weight
            kw = {"device": p.device, "dtype": p.dtype}
            table = model.embedding.weight if model.embedding is not None else torch.eye(len(model.vocab), **kw)
            self.cell = RecurrentStep(model.rnn, table.detach(), batch)
            self.head_w_t = p.detach().t().contiguous()  # (H, V)
            self.head_b = model.head.bias
            self.out = torch.empty(batch, self.head_w_t.shape[1], **kw)  # (B, V)

    def reset(self, state=None) -> None:
        """Start from zeros, or from a layer state ((L, B, H), or (h, c) for the LSTM)."""
        if self.cell is not None:
            self.cell.reset(state)
        else:
            self._state = state

    @property
    def state(self):
        return self.cell.state if self.cell is not None else self._state

    @torch.no_grad()
    def logits(self, idx: Tensor) -> Tensor:
        """idx (B,) long -> logits (B, V) for the next character; the state moves one step."""
        if self.cell is None:
            logits, self._state = self.model(idx.unsqueeze(1), self._state)  # (B, 1, V)
            return logits[:, -1]
        h = self.cell(idx)  # (B, H) the top layer's new state
        if self.head_b is not None:
            return torch.addmm(self.head_b, h, self.head_w_t, out=self.out)  # (B, V)
        return torch.mm(h, self.head_w_t, out=self.out)
