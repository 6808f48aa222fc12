"""Scan-trained recurrences (minGRU, minLSTM): gates from the input alone, trained over the whole sequence at once.

Feng et al. 2024 ("Were RNNs All We Needed?") drop h_{t-1} from the gates and the candidate of
the GRU and the LSTM. What is left is a linear recurrence in h with coefficients computed from
the input alone, for every layer l and step t (x_t the output of the layer below):

    minGRU                                        minLSTM
    z_t  = sigmoid(W_z x_t + b_z)   update gate   f_t  = sigmoid(W_f x_t + b_f)     forget gate
    n_t  = pos(W_n x_t + b_n)       candidate     i_t  = sigmoid(W_i x_t + b_i)     input gate
    h_t  = (1 - z_t) h_{t-1} + z_t n_t            f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
                                                  g_t  = pos(W_g x_t + b_g)         candidate
                                                  h_t  = f'_t h_{t-1} + i'_t g_t

    pos(v) = v + 1/2 for v >= 0, sigmoid(v) below    (the paper's g: positive, continuous, linear growth)

Both are h_t = a_t h_{t-1} + b_t with a_t, b_t known for all t before the recurrence runs, so
the whole window can be computed at once. Three paths, equal to 1e-10 in float64
(tests/test_minimal.py):

* **readable** (`layer.readable`): the Python loop over t, one step function per cell
  (`mingru_step`, `minlstm_step`); `record=True` returns every state and gate;
* **scan** (`layer.parallel(..., how="scan")`): the log-space scan (Heinsen 2023): with
  A_t = sum_{s<=t} log a_s, h_t = e^{A_t} h_0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s)),
  log a and log b computed straight from the pre-activations (softplus), so no gate underflows;
  the carried h_0 enters outside the logarithm, so any state (of either sign) may be given;
* **loop** (`how="loop"`): a loop over t with a hand-written backward (the same recurrence run
  backwards in time) instead of a graph of T nodes. On a float CPU tensor where the step kernels
  load, it is compiled (`unrolled.kernels.recurrence`, csrc/minimal.cpp: one pass over the
  pre-activations forward and one backward, every gate and its derivative fused); elsewhere it is
  `MinimalLoop`: the gates of every step at once, then one torch.lerp a step (h + z (n - h)).

`path="auto"` (the default) takes the loop on the CPU and the scan elsewhere: on this project's
CPU the loop measured 3-7x faster than the scan at every shape `benchmarks/minimal.py` tried
(docs/performance.md), as the scan makes several passes of exp/log over (B, T, H) where the loop
makes one multiply-add, and two cores have no use for the scan's parallelism over T; that
parallelism is what the scan is for on a GPU (not measured here). The compiled loop only widens
the gap.

Stacking, our choice: layer l's linear maps read layer l-1's output h^{l-1}_t (x_t for l = 0),
with dropout between layers as the other layers have; those per-layer projections are the only
mixing between units. We add no normalisation, residual or MLP block around a layer, so a MinGRU
is used, and compared with unrolled.LSTM, layer for layer.

Parameters, per layer k: weight_ih_l{k} (G*H, D_k) and bias_ih_l{k} (G*H,), gate rows stacked
z, n (minGRU, G = 2) or f, i, g (minLSTM, G = 3), every one U(-1/sqrt(H), 1/sqrt(H)) as the
other layers; there is no weight_hh. State: h (L, B, H), as unrolled.GRU's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import facts, init_uniform_
from unrolled.kernels import recurrence

PATHS = ("auto", "readable", "scan", "loop")


def pos(v: Tensor) -> Tensor:
    """The candidate's activation: v + 1/2 for v >= 0, sigmoid(v) below; always positive.

    Written sigmoid(min(v, 0)) + relu(v), without a `where` (several times slower on the CPU);
    its derivative at 0 is the left one, 1/4, on every path."""
    return torch.sigmoid(v.clamp(max=0)) + torch.relu(v)


def log_pos(v: Tensor) -> Tensor:
    """log pos(v) = log(relu(v) + 1/2) - softplus(-min(v, 0)) + log 2, without forming a tiny pos(v):
    log(v + 1/2) for v >= 0, log sigmoid(v) = -softplus(-v) below."""
    return torch.log(torch.relu(v) + 0.5) - F.softplus(-v.clamp(max=0)) + math.log(2.0)


def mingru_step(x: Tensor, h: Tensor, weight_ih: Tensor, bias_ih: Tensor | None = None):
    """One minGRU step: z = sigmoid(W_z x + b_z), n = pos(W_n x + b_n), h' = (1 - z) h + z n.

    x: (B, D), h: (B, H) -> (h', gates) where gates maps z, n to (B, H).
    """
    k_z, k_n = F.linear(x, weight_ih, bias_ih).chunk(2, dim=1)  # each (B, H)
    z, n = torch.sigmoid(k_z), pos(k_n)
    return (1 - z) * h + z * n, {"z": z, "n": n}


def minlstm_step(x: Tensor, h: Tensor, weight_ih: Tensor, bias_ih: Tensor | None = None):
    """One minLSTM step: f, i = sigmoid(W_{f,i} x + b_{f,i}), normalised to f' = f / (f + i) and
    i' = i / (f + i); g = pos(W_g x + b_g); h' = f' h + i' g.

    x: (B, D), h: (B, H) -> (h', gates) where gates maps f, i (the normalised f', i') and g to (B, H).
    """
    k_f, k_i, k_g = F.linear(x, weight_ih, bias_ih).chunk(3, dim=1)  # each (B, H)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    f, i = f / (f + i), i / (f + i)
    g = pos(k_g)
    return f * h + i * g, {"f": f, "i": i, "g": g}


STEPS = {"mingru": mingru_step, "minlstm": minlstm_step}


def coefficients(kind: str, pre: Tensor, log: bool) -> tuple[Tensor, Tensor]:
    """The recurrence h_t = a_t h_{t-1} + b_t of all steps from the pre-activations pre (..., G*H):
    (a, b), or (log a, log b) with log=True, each (..., H).

    minGRU: a = 1 - z = sigmoid(-k_z), b = z n.  minLSTM: with d = log(i / f) =
    softplus(-k_f) - softplus(-k_i), a = f' = sigmoid(-d), b = i' g = sigmoid(d) g."""
    if kind == "mingru":
        k_z, k_n = pre.chunk(2, dim=-1)
        k_a, k_b = -k_z, k_z  # 1 - z = sigmoid(-k_z), z = sigmoid(k_z)
    else:
        k_f, k_i, k_n = pre.chunk(3, dim=-1)
        k_b = F.softplus(-k_f) - F.softplus(-k_i)  # d = log i - log f
        k_a = -k_b  # f' = sigmoid(-d), i' = sigmoid(d)
    if log:
        return -F.softplus(-k_a), -F.softplus(-k_b) + log_pos(k_n)  # log sigmoid(v) = -softplus(-v)
    return torch.sigmoid(k_a), torch.sigmoid(k_b) * pos(k_n)


def scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for every t at once: log_a, log_b (B, T, H) with b > 0, h0 (B, H)
    of any sign -> h (B, T, H).

        A_t = sum_{s<=t} log a_s,   h_t = e^{A_t} h_0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s))
    """
    A = torch.cumsum(log_a, dim=1)  # (B, T, H)
    return torch.exp(A) * h0.unsqueeze(1) + torch.exp(A + torch.logcumsumexp(log_b - A, dim=1))


def _loop(kind: str, p: Tensor, w: Tensor, h0: Tensor) -> Tensor:
    """The recurrence as one torch.lerp a step: p, w (B, T, H), h0 (B, H) -> h (B, T, H).
    minGRU h_t = lerp(h_{t-1}, n_t, z_t) (p = n, w = z); minLSTM h_t = lerp(g~_t, h_{t-1}, f'_t) (p = g~, w = f')."""
    out = torch.empty_like(p)
    h = h0
    for t in range(p.shape[1]):
        if kind == "mingru":
            h = torch.lerp(h, p[:, t], w[:, t], out=out[:, t])  # h + z (n - h)
        else:
            h = torch.lerp(p[:, t], h, w[:, t], out=out[:, t])  # g~ + f' (h - g~)
    return out


def _loop_back(a: Tensor, grad_out: Tensor) -> Tensor:
    """g_t = dL/dh_t + a_{t+1} g_{t+1}: the same recurrence backwards in time -> g (B, T, H)."""
    g = torch.empty_like(a)
    acc = g[:, -1]
    acc.copy_(grad_out[:, -1])
    for t in range(a.shape[1] - 2, -1, -1):
        acc = torch.addcmul(grad_out[:, t], a[:, t + 1], acc, out=g[:, t])
    return g


def _pos_parts(v: Tensor) -> tuple[Tensor, Tensor]:
    """pos(v) = s + r with s = sigmoid(min(v, 0)), r = relu(v); both kept for the backward."""
    return v.clamp(max=0).sigmoid_(), torch.relu(v)


def _pos_grad(s: Tensor, r: Tensor) -> Tensor:
    """pos'(v) = s (1 - s) + 3/4 [v > 0] (s = 1/2 there): sigmoid' below 0, 1 above, 1/4 at 0 as autograd's."""
    return torch.addcmul(s, s, s, value=-1).add_(torch.sign(r), alpha=0.75)


def _minus_prev(x: Tensor, out: Tensor, h0: Tensor) -> Tensor:
    """x_t - h_{t-1} for every t, h_{t-1} from the forward's output: (B, T, H), a new tensor."""
    d = torch.empty_like(x)
    torch.sub(x[:, 1:], out[:, :-1], out=d[:, 1:])
    torch.sub(x[:, 0], h0, out=d[:, 0])
    return d


class MinimalLoop(torch.autograd.Function):
    """One layer of a minimal cell by a loop over t in torch, element-wise math fused by hand (every
    pass over (B, T, H) counts on a CPU): pre (B, T, G*H) the pre-activations, h0 (B, H) -> h (B, T, H).
    What the loop path runs where the compiled one (`kernels.recurrence`) does not.

    Forward: the gates of all steps at once, then one torch.lerp a step (`_loop`).
    Backward: g_t = dL/dh_t + a_{t+1} g_{t+1} (the loop run backwards, a = 1 - z or f'),
    dL/dh_0 = a_1 g_1, and with the step's change dh_t = h_t - h_{t-1} from the forward
    (z (n - h_{t-1}) for the minGRU, (1 - f') (g~ - h_{t-1}) for the minLSTM),
      minGRU:   dk_z = g z (1 - z) (n - h_{t-1}) = g (1 - z) dh,   dk_n = g z pos'(k_n)
      minLSTM:  f' = sigmoid(log f - log i);  with p = g f' dh = -g f' (1 - f') (h_{t-1} - g~),
                dk_f = -p (1 - f),   dk_i = p (1 - i),   dk_g = g (1 - f') pos'(k_g)
    """

    @staticmethod
    def forward(ctx, pre: Tensor, h0: Tensor, kind: str) -> Tensor:
        ctx.kind = kind
        if kind == "mingru":
            k_z, k_n = pre.chunk(2, dim=-1)  # each (B, T, H)
            z = torch.sigmoid(k_z)
            s, r = _pos_parts(k_n)
            out = _loop(kind, s + r, z, h0)
            ctx.save_for_backward(z, s, r, h0, out)
            return out
        k_f, k_i, k_g = pre.chunk(3, dim=-1)
        lf, li = F.logsigmoid(k_f), F.logsigmoid(k_i)  # log f, log i
        a = torch.sub(lf, li).sigmoid_()  # f' = f / (f + i)
        s, r = _pos_parts(k_g)
        out = _loop(kind, s + r, a, h0)  # s + r: the candidate g~
        ctx.save_for_backward(lf, li, a, s, r, h0, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.kind == "mingru":
            z, s, r, h0, out = ctx.saved_tensors
            a = 1 - z
            g = _loop_back(a, grad_out)  # (B, T, H)
            H, d_h0 = out.shape[-1], a[:, 0] * g[:, 0]
            d_pre = out.new_empty(*out.shape[:-1], 2 * H)  # (B, T, 2H)
            torch.mul(_minus_prev(out, out, h0).mul_(g), a, out=d_pre[..., :H])  # g (1 - z) dh
            torch.mul(g.mul_(z), _pos_grad(s, r), out=d_pre[..., H:])  # g z pos'
            return d_pre, d_h0, None
        lf, li, a, s, r, h0, out = ctx.saved_tensors
        g = _loop_back(a, grad_out)
        H, d_h0 = out.shape[-1], a[:, 0] * g[:, 0]
        d_pre = out.new_empty(*out.shape[:-1], 3 * H)  # (B, T, 3H)
        p = _minus_prev(out, out, h0).mul_(g).mul_(a)  # g f' dh
        torch.mul(p, torch.expm1(lf), out=d_pre[..., :H])  # -p (1 - f), 1 - f = -expm1(log f)
        torch.mul(p, torch.expm1(li).neg_(), out=d_pre[..., H:2 * H])  # p (1 - i)
        torch.mul(g.mul_(1 - a), _pos_grad(s, r), out=d_pre[..., 2 * H:])
        return d_pre, d_h0, None


class Minimal(nn.Module):
    """Base of MinGRU and MinLSTM: what differs is the gate count (2, 3) and the coefficients."""

    kind = "mingru"
    bidirectional = False  # left to right only
    num_directions = 1
    has_fast_path = False  # no torch fused kernel: generation steps through the layer itself

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, path: str = "auto", device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        for what, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if bidirectional:
            raise ValueError(f"{name} runs left to right only; bidirectional=True is not supported")
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.dropout, self.path = bias, float(dropout), path
        gh = facts(self).num_gates * hidden_size
        kw = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            d_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gh, d_in, **kw)))  # (G*H, D_k)
            bias_k = nn.Parameter(torch.empty(gh, **kw)) if bias else None  # (G*H,)
            self.register_parameter(f"bias_ih_l{k}", bias_k)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), as the other layers."""
        init_uniform_(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += "" if self.bias else ", bias=False"
        s += f", dropout={self.dropout}" if self.dropout else ""
        return s + f", path={self.path!r}"

    def layer_weights(self, k: int) -> tuple[Tensor, Tensor | None]:
        """(weight_ih, bias_ih) of layer k."""
        return getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}")

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def zero_state(self, batch: int, like: Tensor) -> Tensor:
        """The default state: zeros (L, B, H)."""
        return like.new_zeros(self.num_layers, batch, self.hidden_size)

    def _check(self, x, state, lengths) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} expects input of shape (B, T, {self.input_size}) (batch first), got {got}")
        if x.shape[1] == 0:
            raise ValueError(f"{name} got an empty sequence (T = 0); give it at least one step")
        if lengths is not None:
            raise ValueError(f"{name} reads every step of every row; it takes no lengths")
        want = (self.num_layers, x.shape[0], self.hidden_size)
        if state is None:
            return self.zero_state(x.shape[0], x)
        if not isinstance(state, Tensor) or tuple(state.shape) != want:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"{name} expects a state of shape {want} (layers, B, H), got {got}")
        return state

    def forward(self, x: Tensor, state: Tensor | None = None, lengths=None):
        """x (B, T, D), state (L, B, H) or None (zeros) -> (output (B, T, H), state (L, B, H))."""
        path = self.path if self.path != "auto" else self._auto_path(x)
        if path == "readable":
            return self.readable(x, state, lengths)
        return self.parallel(x, state, how=path, lengths=lengths)

    def _auto_path(self, x: Tensor) -> str:
        """"auto": the loop on the CPU, where it measured faster (docs/performance.md); the scan elsewhere."""
        return "loop" if x.device.type == "cpu" else "scan"

    def parallel(self, x: Tensor, state: Tensor | None = None, how: str = "loop", lengths=None):
        """All steps of a layer at once: one matrix product for the pre-activations of every step,
        then the recurrence by `scan_log` (how="scan") or the loop (how="loop": compiled where
        `kernels.recurrence` is available, else `MinimalLoop`)."""
        if how not in ("scan", "loop"):
            raise ValueError(f"how must be 'scan' or 'loop', got {how!r}")
        state = self._check(x, state, lengths)
        finals = []
        for k in range(self.num_layers):
            pre = F.linear(x, *self.layer_weights(k))  # (B, T, G*H)
            if how == "scan":
                x = scan_log(*coefficients(self.kind, pre, log=True), state[k])  # (B, T, H)
            else:
                loop = recurrence.MinimalSequence if recurrence.available(pre) else MinimalLoop
                x = loop.apply(pre, state[k], self.kind)  # (B, T, H)
            finals.append(x[:, -1])
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # never after the last layer
        return x, torch.stack(finals)  # (B, T, H), (L, B, H)

    def readable(self, x: Tensor, state: Tensor | None = None, lengths=None, record: bool = False):
        """The plain loop: for each layer, for each step t, h = cell_step(x_t, h).

        With record=True also returns a list (one per layer) of dicts of (B, T, H) tensors: the
        state "h" and every gate ("z", "n" for the minGRU; "f", "i" (normalised) and "g" for the
        minLSTM), as `Recurrent.readable` does.
        """
        state = self._check(x, state, lengths)
        step = STEPS[facts(self).name]
        finals, trace = [], []
        for k in range(self.num_layers):
            h, w = state[k], self.layer_weights(k)
            outputs, steps = [], {}
            for t in range(x.shape[1]):
                h, gates = step(x[:, t], h, *w)  # (B, H)
                outputs.append(h)
                if record:
                    for key, v in {"h": h, **gates}.items():
                        steps.setdefault(key, []).append(v)
            x = torch.stack(outputs, dim=1)  # (B, T, H)
            finals.append(h)
            trace.append({key: torch.stack(v, dim=1) for key, v in steps.items()})
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        final = torch.stack(finals)  # (L, B, H)
        return (x, final, trace) if record else (x, final)


class MinGRU(Minimal):
    """The minimal GRU (Feng et al. 2024), stacked: for every layer l and step t,

        z_t = sigmoid(W_z x_t + b_z)         update gate, from the input alone
        n_t = pos(W_n x_t + b_n)             candidate (pos(v) = v + 1/2 for v >= 0, sigmoid(v) below)
        h_t = (1 - z_t) h_{t-1} + z_t n_t

    with x_t the output of the layer below. Gate rows stacked z, n in weight_ih_l{k} (2H, D_k).
    Paths and stacking: the module docstring.
    """

    kind = "mingru"


class MinLSTM(Minimal):
    """The minimal LSTM (Feng et al. 2024), stacked: for every layer l and step t,

        f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i)     from the input alone
        f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t)        normalised: f' + i' = 1
        g_t = pos(W_g x_t + b_g)                                        candidate
        h_t = f'_t h_{t-1} + i'_t g_t                                   no output gate, no cell state apart

    with x_t the output of the layer below. Gate rows stacked f, i, g in weight_ih_l{k} (3H, D_k).
    Paths and stacking: the module docstring.
    """

    kind = "minlstm"


LAYERS = {"mingru": MinGRU, "minlstm": MinLSTM}
