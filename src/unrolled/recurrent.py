"""Unrolling a cell over time, stacked in layers: `RNN`, `LSTM`, `GRU`.

Shapes (always batch first): x (B, T, D), output (B, T, H * directions),
state (L * directions, B, H), or a tuple (h, c) of two such tensors for the LSTM.

The same parameters run on three paths:

* the **readable** path (`layer.readable(...)`, here): a Python loop over time that calls the
  hand-written step of `cells.py`; it can record every state and gate at every step;
* the **fast** path (`layer.fast(...)`, `unrolled.fused`): PyTorch's fused sequence kernels
  (oneDNN on CPU, cuDNN on GPU), the very functions `torch.nn.RNN/LSTM/GRU` call, over our parameters;
* the **kernel** path (`layer.kernel(...)`, `unrolled.kernels`): our own sequence kernels: one
  matrix product for the input projection of all steps, one per weight gradient, a hand-written
  backward (padding `lengths` go to the fused path).

`forward` picks one by `layer.path`: "auto" (the default: the fastest path this layer has: the
readable loop for a deep transition, our kernel where `unrolled bench` measured it ahead
(`kernels.KERNEL_WINS`), else the fused one), "fast", "kernel" or "readable". Training uses the
default; recording activations uses `readable(..., record=True)`. docs/performance.md has the
measurements; tests/test_recurrent.py proves the paths equal `torch.nn` and each other.

Parameter names and order are torch.nn's: for every layer k and direction,
weight_ih_l{k}[_reverse] (G*H, D_k), weight_hh_l{k}[_reverse] (G*H, H),
bias_ih_l{k}[_reverse] (G*H,), bias_hh_l{k}[_reverse] (G*H,), with D_0 = D and
D_k = H * directions above, so `state_dict()` loads into `torch.nn.LSTM(..., batch_first=True)`
and back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.cells import NONLINEARITIES, facts, gru_step, init_uniform_, lstm_step, rnn_step
from unrolled.deep import MLP, DeepTransition, check_depths
from unrolled.fused import run_fused
from unrolled.kernels import prefers_kernel, run_layers

PATHS = ("fast", "readable", "auto", "kernel")


def detach_state(state):
    """Cut the graph behind a carried state (a tensor or an LSTM's (h, c)); values unchanged."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (B, T, ...) in time, within its own length; padding stays put."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    L = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t)  # (B, T)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class Recurrent(nn.Module):
    """Base of RNN, LSTM and GRU: what differs is the gate count G (1, 4, 3) and the step."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, path: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.dropout, self.bidirectional, self.path = bias, float(dropout), bidirectional, path
        self.num_directions = 2 if bidirectional else 1
        gh = facts(self).num_gates * hidden_size
        kw = {"device": device, "dtype": dtype}
        self._weight_names: list[str] = []  # torch.nn's _flat_weights_names order
        for k in range(num_layers):
            d_in = self._layer0_input_size() if k == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (gh, d_in), "weight_hh": (gh, hidden_size)}
                if bias:
                    shapes.update({"bias_ih": (gh,), "bias_hh": (gh,)})
                for stem, shape in shapes.items():
                    name = f"{stem}_l{k}{suffix}"
                    self.register_parameter(name, nn.Parameter(torch.empty(*shape, **kw)))
                    self._weight_names.append(name)
        self.reset_parameters()

    # --- construction -------------------------------------------------------------------------
    def _layer0_input_size(self) -> int:
        return self.input_size

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        init_uniform_(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + f", path={self.path!r}"

    def layer_weights(self, k: int, suffix: str = "") -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k (direction given by suffix)."""
        get = lambda stem: getattr(self, f"{stem}_l{k}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def flat_weights(self) -> list[Tensor]:
        """Every parameter of the recurrence in torch.nn's order (its `_flat_weights`)."""
        return [getattr(self, name) for name in self._weight_names]

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    # --- checks -------------------------------------------------------------------------------
    def _state_shape(self, batch: int) -> tuple[int, int, int]:
        return (self.num_layers * self.num_directions, batch, self.hidden_size)

    def zero_state(self, batch: int, like: Tensor):
        """The default state: zeros of shape (L * directions, B, H) ((h, c) for the LSTM)."""
        return like.new_zeros(self._state_shape(batch))

    def _check(self, x, state, lengths):
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} expects input of shape (B, T, {self.input_size}) (batch first), got {got}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"{name} got an empty sequence (T = 0); give it at least one step")
        if state is None:
            state = self.zero_state(B, x)
        else:
            self._check_state(state, B)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
            if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
                raise ValueError(f"{name} expects lengths of shape ({B},) with values in 1..{T}, "
                                 f"got {lengths.tolist()}")
        return state, lengths

    def _check_state(self, state, batch: int) -> None:
        want = self._state_shape(batch)
        if not isinstance(state, Tensor) or tuple(state.shape) != want:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"{type(self).__name__} expects a state of shape {want} "
                             f"(layers * directions, B, H), got {got}")

    # --- the three paths -----------------------------------------------------------------------
    def forward(self, x: Tensor, state=None, lengths=None):
        """x (B, T, D), state or None (zeros), lengths (B,) or None -> (output (B, T, H*dirs), state).

        With `lengths`, row b is read only for its first lengths[b] steps: its state is the one
        after its last real step and the output at padded steps is zero, so padding never
        changes a result.
        """
        path = self.path if self.path != "auto" else self._auto_path(x, lengths)
        if path == "readable":
            return self.readable(x, state, lengths)
        if path == "kernel":
            return self.kernel(x, state, lengths)
        return self.fast(x, state, lengths)

    def _auto_path(self, x: Tensor, lengths) -> str:
        """"auto": readable without a fused kernel, ours where the benchmark shows it wins, else fused."""
        if not self.has_fast_path:
            return "readable"
        return "kernel" if lengths is None and prefers_kernel(self, x) else "fast"

    has_fast_path = True

    def readable(self, x: Tensor, state=None, lengths=None, record: bool = False):
        """The plain loop: for each layer, for each step t, state = cell_step(x_t, state).

        With record=True also returns a list (one per layer) of dicts of (B, T, H) tensors: the
        hidden state "h", the LSTM's cell state "c", and every gate ("i", "f", "g", "o" for the
        LSTM, "r", "z", "n" for the GRU); a bidirectional layer adds the same keys + "_reverse".
        """
        state, lengths = self._check(x, state, lengths)
        x = self._input_transform(x)
        finals: list = []
        trace: list[dict[str, Tensor]] = []
        for k in range(self.num_layers):
            outs, rec = [], {}
            for d, suffix in enumerate(self._suffixes()):
                s0 = self._select_state(state, k * self.num_directions + d)
                seq = x if not suffix else _reverse_within(x, lengths)
                out, s_last, steps = self._unroll(seq, s0, k, suffix, lengths, record)
                if suffix:
                    out = _reverse_within(out, lengths)
                    steps = {key: _reverse_within(v, lengths) for key, v in steps.items()}
                outs.append(out)
                finals.append(s_last)
                rec.update({key + suffix: v for key, v in steps.items()})
            x = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # (B, T, H*dirs)
            trace.append(rec)
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # never after the last layer, as torch.nn
        out = self._output_transform(x)
        final = self._stack_states(finals)
        return (out, final, trace) if record else (out, final)

    def _unroll(self, x: Tensor, s: Tensor, k: int, suffix: str, lengths, record: bool):
        """One layer, one direction: the loop over time. x (B, T, D_k) -> (B, T, H), last state."""
        B, T, _ = x.shape
        w = self.layer_weights(k, suffix)
        outputs, steps = [], {}
        for t in range(T):
            s_new, h_new, gates = self._step(x[:, t], s, w, k, suffix)
            if lengths is not None:  # rows past their length keep their state and output zeros
                valid = (t < lengths).to(x.device).unsqueeze(1)  # (B, 1)
                s_new = self._where(valid, s_new, s)
                h_new = h_new * valid
            s = s_new
            outputs.append(h_new)
            if record:
                for key, v in {"h": h_new, **self._extra_state(s_new), **gates}.items():
                    steps.setdefault(key, []).append(v)
        stacked = {key: torch.stack(v, dim=1) for key, v in steps.items()}  # each (B, T, H)
        return torch.stack(outputs, dim=1), s, stacked

    def fast(self, x: Tensor, state=None, lengths=None):
        """The fused kernels behind torch.nn.RNN/LSTM/GRU, over this layer's parameters."""
        if not self.has_fast_path:
            raise ValueError(f"{type(self).__name__} with a deep transition has no fused kernel; "
                             "use path='readable' or path='auto'")
        state, lengths = self._check(x, state, lengths)
        out, final = run_fused(self, self._input_transform(x), state, lengths)  # (B, T, H*dirs)
        return self._output_transform(out), final

    def kernel(self, x: Tensor, state=None, lengths=None):
        """Our own sequence kernels (`unrolled.kernels`): one matrix product for the input
        projection of all steps, one per weight gradient, a hand-written backward. With `lengths`
        it runs the fused path (packing), which handles padding."""
        if not self.has_fast_path:
            raise ValueError(f"{type(self).__name__} with a deep transition has no sequence kernel; "
                             "use path='readable' or path='auto'")
        if lengths is not None:
            return self.fast(x, state, lengths)
        state, _ = self._check(x, state, None)
        out, finals = run_layers(self, self._input_transform(x), state)  # (B, T, H*dirs)
        return self._output_transform(out), self._stack_states(finals)

    # --- what each cell fills in --------------------------------------------------------------
    def _step(self, x_t, s, w, k, suffix):
        """-> (new state, output h (B, H), gates dict)."""
        raise NotImplementedError

    # A state is one tensor, or the LSTM's pair (h, c) of them: these act on each part.
    def _select_state(self, state, i):
        """Layer-direction i: (L*dirs, B, H) -> (B, H)."""
        return tuple(s[i] for s in state) if isinstance(state, (tuple, list)) else state[i]

    def _stack_states(self, finals):
        if isinstance(finals[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*finals))  # each (L*dirs, B, H)
        return torch.stack(finals)  # (L*dirs, B, H)

    @staticmethod
    def _where(valid, new, old):
        if isinstance(new, tuple):
            return tuple(torch.where(valid, n, o) for n, o in zip(new, old))
        return torch.where(valid, new, old)

    def _extra_state(self, s) -> dict:
        return {}

    def _input_transform(self, x):
        return x

    def _output_transform(self, x):
        return x


class RNN(Recurrent):
    """The vanilla (Elman) RNN, stacked: for every layer l and step t,

        h_t^l = tanh(W_ih^l h_t^{l-1} + b_ih^l + W_hh^l h_{t-1}^l + b_hh^l),   h_t^0 = x_t

    (relu instead of tanh with nonlinearity="relu"). Equal to torch.nn.RNN(..., batch_first=True)
    with the same state_dict. The same weights W_ih^l, W_hh^l serve every step.

    Deeper variants (Pascanu et al. 2013, see `unrolled.deep`): `input_depth` > 0 puts an MLP
    before the recurrence, `transition_depth` > 1 puts an MLP inside every step (with the shortcut
    S h_{t-1} when `shortcut`), `output_depth` > 0 puts an MLP after it. A deep input makes the
    first layer's input size hidden_size; a deep transition runs on the readable path only.
    """

    kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0,
                 nonlinearity="tanh", bidirectional=False, path="auto",
                 input_depth=0, transition_depth=1, output_depth=0, shortcut=True,
                 device=None, dtype=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        check_depths(input_depth, transition_depth, output_depth)
        self.nonlinearity = nonlinearity
        self.input_depth, self.transition_depth, self.output_depth = input_depth, transition_depth, output_depth
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, path, device, dtype)
        H = hidden_size
        # Deep parts draw their weights after the recurrent ones, so plain layers keep torch.nn's init.
        self.input_mlp = MLP(input_size, H, input_depth, nonlinearity) if input_depth else None
        self.transitions = nn.ModuleDict({
            f"l{k}{suffix}": DeepTransition(H, transition_depth, shortcut, nonlinearity)
            for k in range(num_layers) for suffix in self._suffixes()
        }) if transition_depth > 1 else None
        self.output_mlp = MLP(H * self.num_directions, H * self.num_directions, output_depth, nonlinearity) \
            if output_depth else None
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @property
    def has_fast_path(self) -> bool:
        return self.transition_depth == 1

    def _layer0_input_size(self):
        return self.hidden_size if self.input_depth else self.input_size

    def _input_transform(self, x):
        return self.input_mlp(x) if self.input_mlp is not None else x

    def _output_transform(self, x):
        return self.output_mlp(x) if self.output_mlp is not None else x

    def _step(self, x_t, h, w, k, suffix):
        h_new = rnn_step(x_t, h, *w, nonlinearity=self.nonlinearity)  # (B, H)
        if self.transitions is not None:
            h_new = self.transitions[f"l{k}{suffix}"](h_new, h)  # (B, H)
        return h_new, h_new, {}


class GRU(Recurrent):
    """The gated recurrent unit, stacked (gate order r, z, n, as torch.nn.GRU):

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    with x_t the output of the layer below. Equal to torch.nn.GRU(..., batch_first=True).
    """

    kind = "gru"

    def _step(self, x_t, h, w, k, suffix):
        h_new, gates = gru_step(x_t, h, *w)
        return h_new, h_new, gates


class LSTM(Recurrent):
    """The long short-term memory, stacked (gate order i, f, g, o, as torch.nn.LSTM):

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    with x_t the output of the layer below. The state is a tuple (h, c), each (L * dirs, B, H).
    Equal to torch.nn.LSTM(..., batch_first=True).
    """

    kind = "lstm"

    def zero_state(self, batch, like):
        z = like.new_zeros(self._state_shape(batch))
        return (z, z.clone())

    def _check_state(self, state, batch):
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise ValueError(f"LSTM expects a state (h, c) of two tensors of shape {self._state_shape(batch)}, "
                             f"got {type(state).__name__}")
        for s in state:
            super()._check_state(s, batch)

    def _extra_state(self, s):
        return {"c": s[1]}

    def _step(self, x_t, s, w, k, suffix):
        (h, c), gates = lstm_step(x_t, s, *w)
        return (h, c), h, gates


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
