"""One time step of a stacked recurrent layer, every buffer allocated once: the loop of generation.

For a unidirectional layer of L layers, batch B, reading symbols c_t from a table E (V, D) of
input vectors (an embedding, or the identity for one-hot inputs):

    P^0_t = F[c_t] + h^0_{t-1} W_hh^0^T      F = E W_ih^0^T + b   (V, G*H), folded once
    P^k_t = h^{k-1}_t W_ih^k^T + b + h^k_{t-1} W_hh^k^T              (k >= 1)
    h^k_t = cell(P^k_t, h^k_{t-1})                                    (B, H)

The table and the first layer's input product fold into one table F, so reading a symbol is a
row lookup; every other product writes into a preallocated buffer and the element-wise math runs
in place (one compiled call per layer with `kernels.native`, else tensor ops), so a step
allocates almost nothing. A language model puts its head on top (`CharLM.stepper`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from unrolled.kernels import native
from unrolled.kernels.elementwise import tanh_, tanh_into
from unrolled.kernels.product import Product


class RecurrentStep:
    """idx (B,) long -> the top layer's new state (B, H); the state moves one step."""

    @staticmethod
    def supports(rnn) -> bool:
        """Whether `rnn` steps here: unidirectional, on the fast path, without deep parts."""
        return not (rnn.bidirectional or not rnn.has_fast_path or getattr(rnn, "input_depth", 0)
                    or getattr(rnn, "output_depth", 0))

    def __init__(self, rnn, table: Tensor, batch: int = 1):
        if not self.supports(rnn):
            raise ValueError("RecurrentStep needs a unidirectional layer without deep parts")
        self.kind, self.B, H = rnn.kind, batch, rnn.hidden_size
        self.H, self.L = H, rnn.num_layers
        self.relu = getattr(rnn, "nonlinearity", "tanh") == "relu"
        kw = {"device": table.device, "dtype": table.dtype}
        with torch.no_grad():
            w_ih = rnn.layer_weights(0)[0]
            self.first = table @ w_ih.t()  # (V, G*H)
            self.b = [self._bias(*rnn.layer_weights(k)[2:]) for k in range(self.L)]
            if self.b[0] is not None:
                self.first += self.b[0]
            self.w_ih_t = [None] + [rnn.layer_weights(k)[0].t().contiguous() for k in range(1, self.L)]
            self.w_hh_t = [rnn.layer_weights(k)[1].t().contiguous() for k in range(self.L)]  # (H, G*H)
            self.b_hh = [rnn.layer_weights(k)[3] for k in range(self.L)]
            # oneDNN's packed products pay from a batch of a few rows; a single row is a
            # matrix-vector product, where addmm into the buffers measured no slower
            packed = batch >= 8 and self.kind != "rnn"
            self.ih = [None] + [Product(rnn.layer_weights(k)[0], batch) for k in range(1, self.L)] if packed else None
            self.hh = [Product(rnn.layer_weights(k)[1], batch) for k in range(self.L)] if packed else None
        G = self.first.shape[1]
        self.compiled = native.ops_for(self.first)  # each step's element-wise math as one compiled call
        self.h = torch.zeros(self.L, batch, H, **kw)  # (L, B, H)
        self.c = torch.zeros(self.L, batch, H, **kw)  # (L, B, H), LSTM only
        self.pre = torch.empty(batch, G, **kw)  # (B, G*H) pre-activations
        self.act = torch.empty(batch, G, **kw)  # (B, G*H) gate values
        self.rec = torch.empty(batch, G, **kw)  # (B, G*H) GRU: the recurrent product
        self.tmp = torch.empty(batch, H, **kw)

    def _bias(self, b_ih, b_hh):
        if b_ih is None:
            return None
        if self.kind == "gru":  # b_hh[n] sits inside r * (.), so only b_ih folds
            return b_ih.detach().clone()
        return (b_ih + b_hh).detach()

    def reset(self, state=None) -> None:
        """Start from zeros, or from a layer state ((L, B, H), or (h, c) for the LSTM)."""
        if state is None:
            self.h.zero_(), self.c.zero_()
        elif self.kind == "lstm":
            self.h.copy_(state[0]), self.c.copy_(state[1])
        else:
            self.h.copy_(state)

    @property
    def state(self):
        return (self.h, self.c) if self.kind == "lstm" else self.h

    @torch.no_grad()
    def __call__(self, idx: Tensor) -> Tensor:
        """idx (B,) long -> h^{L-1}_t (B, H), a buffer the next call overwrites."""
        pre = self.pre
        for k in range(self.L):
            h = self.h[k]  # (B, H), this layer's state, updated in place
            if k == 0:
                pre = torch.index_select(self.first, 0, idx, out=self.pre)  # (B, G*H)
            elif self.ih is not None:
                pre = self.ih[k](self.h[k - 1], bias=self.b[k])  # (B, G*H)
            elif self.b[k] is not None:
                torch.addmm(self.b[k], self.h[k - 1], self.w_ih_t[k], out=pre)
            else:
                torch.mm(self.h[k - 1], self.w_ih_t[k], out=pre)
            if self.kind == "gru":
                self._gru(h, k, pre)
                continue
            if self.hh is not None:
                pre = self.hh[k](h, other=pre)  # (B, G*H)
            else:
                pre.addmm_(h, self.w_hh_t[k])
            if self.kind == "rnn":
                self._rnn(h, pre)
            else:
                self._lstm(h, k, pre)
        return self.h[-1]

    def _rnn(self, h: Tensor, pre: Tensor) -> None:
        """h = tanh(pre) (or relu), pre (B, H) the full pre-activation."""
        if self.compiled is not None:
            self.compiled.rnn_step(pre, h, self.relu)
        else:
            h.copy_(pre.relu_() if self.relu else tanh_(pre))

    def _lstm(self, h: Tensor, k: int, pre: Tensor) -> None:
        """c = f c + i g,  h = o tanh(c), from pre (B, 4H) the full pre-activations (overwritten)."""
        H, c = self.H, self.c[k]
        if self.compiled is not None:
            self.compiled.lstm_step(pre, c, h)
            return
        act = self.act
        pre[:, 2 * H:3 * H].mul_(2)
        torch.sigmoid(pre, out=act)
        act[:, 2 * H:3 * H].mul_(2).sub_(1)  # g = tanh(p_g) = 2 sigmoid(2 p_g) - 1
        c.mul_(act[:, H:2 * H]).addcmul_(act[:, :H], act[:, 2 * H:3 * H])  # c = f c + i g
        torch.mul(act[:, 3 * H:], tanh_into(c, self.tmp), out=h)  # h = o tanh(c)

    def _gru(self, h: Tensor, k: int, pre: Tensor) -> None:
        """h = n + z (h - n) from pre (B, 3H) the input part (with b_ih); the recurrent part here."""
        H, rec = self.H, self.rec
        if self.hh is not None:
            rec = self.hh[k](h, bias=self.b_hh[k])  # (B, 3H)
        elif self.b_hh[k] is not None:
            torch.addmm(self.b_hh[k], h, self.w_hh_t[k], out=rec)  # (B, 3H)
        else:
            torch.mm(h, self.w_hh_t[k], out=rec)
        if self.compiled is not None:
            self.compiled.gru_step(pre, rec, h, self.act)
            return
        rz = pre[:, :2 * H].add_(rec[:, :2 * H]).sigmoid_()  # (B, 2H)
        n = tanh_(pre[:, 2 * H:].addcmul_(rz[:, :H], rec[:, 2 * H:]))  # (B, H)
        h.sub_(n).mul_(rz[:, H:]).add_(n)  # h = n + z (h - n)
