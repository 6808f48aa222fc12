"""Units held to a value while the model runs: what `unrolled intervene` and `sample --clamp` do.

A unit is named as `unrolled cells` names it: the quantity, the layer, a colon, the index:
"h1:12" is unit 12 of layer 1's hidden state, "c0:97" unit 97 of layer 0's LSTM cell state.
Only what a layer carries from one step to the next can be held (h; h and c for the LSTM).

What holding means, exactly: right after layer l computes its step t, the held component of its
state is replaced by the value, and everything after that sees the replaced value:

    h^l_t[j] <- v    the layer above at step t, the head at step t (top layer) and step t+1 read v
    c^l_t[j] <- v    (LSTM) step t+1 reads v; h^l_t was already computed from the cell's own c^l_t,
                     so a held cell unit shows in the outputs from the next character on

The layer is run one step at a time for this, through single-layer views of its own parameters
(`layer_views`), so the replacement works the same on every path: torch's fused kernels, our
kernels and the readable loop (tests/test_intervene.py checks fused against readable).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from unrolled.cells import facts
from unrolled.errors import UserError
from unrolled.recurrent import LAYERS

_UNIT = re.compile(r"^([a-z]+)(\d+):(\d+)$")


@dataclass(frozen=True)
class Unit:
    """One unit of a layer's carried state: key "h" or "c", layer index, unit index."""

    key: str
    layer: int
    index: int

    @property
    def name(self) -> str:
        return f"{self.key}{self.layer}:{self.index}"

    @property
    def part(self) -> int:
        """Where it sits in the carried state: 0 for h, 1 for the LSTM's c."""
        return 0 if self.key == "h" else 1


def parse_unit(name: str, rnn, flag: str = "--unit") -> Unit:
    """A unit named like "c1:97" that `rnn` has, or a UserError naming `flag`."""
    m = _UNIT.match(str(name).strip())
    cell = facts(rnn)
    example = f"{cell.carries[-1]}{rnn.num_layers - 1}:0"
    if not m:
        raise UserError(f"{flag} {name!r} is not a unit name; name one as `unrolled cells` does, like {example}")
    key, layer, index = m.group(1), int(m.group(2)), int(m.group(3))
    if key not in cell.carries:
        raise UserError(f"{flag} {name!r}: a {cell.name} layer carries {', '.join(cell.carries)}, so only "
                        f"those units can be held, like {example}")
    if layer >= rnn.num_layers or index >= rnn.hidden_size:
        raise UserError(f"{flag} {name!r}: the model has {rnn.num_layers} layer(s) of {rnn.hidden_size} units, "
                        f"so names run from {key}0:0 to {key}{rnn.num_layers - 1}:{rnn.hidden_size - 1}")
    return Unit(key, layer, index)


def parse_clamp(spec: str, rnn, flag: str = "--clamp") -> tuple[Unit, float]:
    """"c1:97=3" -> (the unit, 3.0), or a UserError naming `flag`."""
    name, eq, value = str(spec).partition("=")
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not eq or v != v or abs(v) == float("inf"):
        raise UserError(f"{flag} {spec!r} must be UNIT=VALUE with a finite number, like c1:97=3")
    return parse_unit(name, rnn, flag), v


def check_layer(rnn) -> None:
    """A UserError unless `rnn` is a plain left-to-right RNN, LSTM or GRU (what can be held)."""
    if getattr(rnn, "bidirectional", False):
        raise UserError("holding a unit needs a left-to-right model; this one is bidirectional")
    if any(getattr(rnn, part, None) is not None for part in ("input_mlp", "transitions", "output_mlp")):
        raise UserError("holding a unit works on plain layers; this model has deep input, transition or output parts")


def layer_views(rnn, path: str = "auto") -> list:
    """One single-layer module per layer of `rnn`, sharing its parameters (no copy), on `path`.

    Built on the meta device and then handed the real parameters, so making them draws no random
    numbers and allocates nothing."""
    check_layer(rnn)
    kind = facts(rnn).name
    extra = {"nonlinearity": rnn.nonlinearity} if kind == "rnn" else {}
    views = []
    for k in range(rnn.num_layers):
        d_in = rnn.input_size if k == 0 else rnn.hidden_size
        view = LAYERS[kind](d_in, rnn.hidden_size, 1, bias=rnn.bias, path=path, device="meta", **extra)
        for stem, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), rnn.layer_weights(k)):
            if p is not None:
                setattr(view, f"{stem}_l0", p)
        views.append(view)
    return views


def layer_state(rnn, state, k: int):
    """Layer k's part of a stacked state ((L, B, H), or the LSTM's (h, c)), as (1, B, H) clones."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s[k:k + 1].clone() for s in state)
    return state[k:k + 1].clone()


def stack_states(states: list):
    """Per-layer (1, B, H) states back into the stacked form."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states))
    return torch.cat(states)


@dataclass
class Holds:
    """The replacements of one layer: state part (0 h, 1 c), batch rows, unit indices, values (n,)."""

    part: Tensor
    rows: Tensor
    units: Tensor
    values: Tensor

    @classmethod
    def of(cls, entries, device, dtype) -> "Holds":
        """entries: [(part, row, unit, value), ...]."""
        cols = list(zip(*entries)) if entries else [(), (), (), ()]
        long = dict(dtype=torch.long, device=device)
        return cls(torch.tensor(cols[0], **long), torch.tensor(cols[1], **long), torch.tensor(cols[2], **long),
                   torch.tensor(cols[3], dtype=dtype, device=device))


def hold(out_t: Tensor, state, holds: Holds, active: Tensor | None = None):
    """Replace the held units after one step: out_t (B, H) the layer's output, state its (1, B, H)
    state (or (h, c)); `active` (B,) bool says which rows hold at this step (None: all). In place."""
    parts = state if isinstance(state, tuple) else (state,)
    for p in (0, 1):
        sel = holds.part == p
        if p >= len(parts) or not bool(sel.any()):
            continue
        rows, units, values = holds.rows[sel], holds.units[sel], holds.values[sel]
        target = parts[p][0]  # (B, H)
        if active is not None:
            values = torch.where(active[rows], values, target[rows, units])
        target[rows, units] = values
        if p == 0:
            out_t[rows, units] = values
    return state


def step_layer(view, x_t: Tensor, state, holds: Holds | None, active: Tensor | None = None):
    """One step of one layer with its holds: x_t (B, D) -> (output (B, H), new state)."""
    out, state = view(x_t.unsqueeze(1), state)  # (B, 1, H)
    out_t = out[:, 0]
    if holds is not None:
        state = hold(out_t, state, holds, active)
    return out_t, state


class ClampedStepper:
    """Generation with units held: the CharStepper interface (`logits(idx)`, `reset`, `state`),
    stepping each layer through `layer_views` and holding `clamps` [(Unit, value), ...] on every row."""

    def __init__(self, model, clamps, batch: int = 1, path: str = "auto"):
        self.model = model
        self.views = layer_views(model.rnn, path)
        p = model.head.weight
        self.holds = [Holds.of([(u.part, b, u.index, v) for u, v in clamps if u.layer == k for b in range(batch)],
                               p.device, p.dtype) for k in range(model.rnn.num_layers)]
        self.batch = batch
        self.states = None

    def reset(self, state=None) -> None:
        """Start from zeros, or from a layer state ((L, B, H), or (h, c) for the LSTM)."""
        rnn = self.model.rnn
        if state is None:
            state = rnn.zero_state(self.batch, self.model.head.weight)
        self.states = [layer_state(rnn, state, k) for k in range(rnn.num_layers)]

    @property
    def state(self):
        return stack_states(self.states)

    @torch.no_grad()
    def logits(self, idx: Tensor) -> Tensor:
        """idx (B,) long -> logits (B, V) for the next character; the state moves one step."""
        x = self.model.embed(idx.unsqueeze(1))[:, 0]  # (B, D)
        for k, view in enumerate(self.views):
            x, self.states[k] = step_layer(view, x, self.states[k], self.holds[k])
        return self.model.head(x)  # (B, V)
