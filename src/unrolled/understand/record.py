"""Record everything a character language model computes over a text.

For every character c_t of the text and every layer l the recording holds the state after
reading c_t:

    h_t^l                       hidden state          (all cells)
    c_t^l                       LSTM cell state
    i, f, g, o  (LSTM)          input, forget gate, candidate, output gate
    r, z, n     (GRU)           reset, update gate, candidate
    p(c_{t+1} | c_1 .. c_t)     the predicted distribution over the next character

Speed comes from batching over parallel chunks with the state carried. The text is cut into S
contiguous streams of equal length; all S streams advance together, `window` characters at a
time, through the readable path (`layer.readable(..., record=True)`, the step-by-step loop that
exposes every gate), and each stream's state is carried from one window to the next. So the
value recorded at character t of stream s is exactly the value the step-by-step loop gives
when it reads stream s from its start up to t. A stream other than the first may first read
`warmup` characters that precede it (its state is then not zero at its start, as if the text
had been read from further back); with `streams=1` the recording is the plain loop over the
whole text. tests/test_understand_record.py checks both statements against `readable`.

The recording is plain data (NumPy arrays in a dict) so other tools (search, render, the web
viewer) never need torch; `save_recording` writes it as `.npz` or `.safetensors`. In Jupyter a
recording shows itself (its predictions coloured over the text), and `show(units)` colours units.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save_file

from unrolled.cells import CellFacts, facts
from unrolled.errors import UserError
from unrolled.understand import render

SHOWN = 400  # characters a recording shows of its text in Jupyter


@dataclass
class Recording:
    """What a model computed over a text, as NumPy arrays.

    text        the text (str); positions index its characters
    positions   (K,) int64, the characters kept (sorted); all of them unless asked otherwise
    states      "h0", "c1", "f0", ...: quantity + layer index -> (K, H) float32 at the kept
                characters (the state after reading that character)
    probs       (K, V) float32, p(next character | text up to and including this one), or None
    logp_next   (N,) float32 over *every* character: log p(c_{t+1} | c_1..c_t) of the character
                that really follows (NaN at the last one)
    chars       the vocabulary's symbols: probs[:, v] is the probability of chars[v]
    kind, num_layers, hidden_size   the recurrent layer recorded
    """

    text: str
    positions: np.ndarray
    states: dict[str, np.ndarray]
    probs: np.ndarray | None
    logp_next: np.ndarray
    chars: list[str]
    kind: str
    num_layers: int
    hidden_size: int
    meta: dict = field(default_factory=dict)

    def units(self, keys=("h", "c"), layers=None) -> tuple[np.ndarray, list[str]]:
        """Stack the chosen quantities side by side: (K, U) values and U names like "c1:17"."""
        layers = range(self.num_layers) if layers is None else layers
        blocks, names = [], []
        for key in keys:
            for l in layers:
                name = f"{key}{l}"
                if name not in self.states:
                    continue
                blocks.append(self.states[name])
                names += [f"{name}:{j}" for j in range(self.states[name].shape[1])]
        if not blocks:
            raise UserError(f"the recording has none of the states {', '.join(keys)}; "
                            f"it has {', '.join(sorted(self.states))}")
        return np.concatenate(blocks, axis=1), names

    def unit(self, name: str) -> np.ndarray:
        """One unit's values at the kept characters, by name ("c1:17")."""
        key, _, j = name.partition(":")
        if key not in self.states or not j.isdigit() or int(j) >= self.states[key].shape[1]:
            raise UserError(f"no unit {name!r} in the recording; names look like "
                            f"{next(iter(self.states))}:0")
        return self.states[key][:, int(j)]

    def bits_per_char(self) -> float:
        """Mean -log2 p(next character) over the text (every character but the last)."""
        lp = self.logp_next[:-1]
        return float(-lp.mean() / math.log(2)) if lp.size else float("nan")

    def __repr__(self) -> str:
        return (f"Recording({self.num_layers} x {self.hidden_size} {self.kind}, {len(self.text):,} characters, "
                f"{self.positions.size:,} kept, states {' '.join(sorted(self.states))})")

    def p_of_chars(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """(end - start,) the probability the model gave each character of text[start:end] when
        it predicted it from the characters before (NaN for the text's first character)."""
        end = len(self.text) if end is None else end
        before = self.logp_next[max(start - 1, 0):max(end - 1, 0)]  # character t was predicted at step t - 1
        return np.exp(np.concatenate([[np.nan], before]) if start == 0 else before)

    def show(self, units, start: int = 0, end: int | None = None, title: str = "units") -> render.Page:
        """The text[start:end] once per unit, each character on the unit's colour (blue-white-red):
        a page that shows itself in Jupyter. `units` is a name ("c1:17") or a list of them; every
        character of the span must have been kept (`record(..., positions=...)`)."""
        names = [units] if isinstance(units, str) else list(units)
        end = len(self.text) if end is None else end
        if not 0 <= start < end <= len(self.text):
            raise UserError(f"the span {start}..{end} must lie within 0..{len(self.text)} and be non-empty")
        at = np.searchsorted(self.positions, np.arange(start, end))
        if at[-1] >= self.positions.size or not np.array_equal(self.positions[at], np.arange(start, end)):
            raise UserError(f"the recording did not keep every character of {start}..{end}; record with "
                            "positions covering the span")
        rows = [(name, self.unit(name)[at]) for name in names]
        return render.units_html(self.text[start:end], rows, title=title)

    def _repr_html_(self) -> str:
        """In Jupyter: what was recorded, then the text's first characters on the probability the
        model gave each (red: confident and right, white: p = 0.5, blue: a miss)."""
        n = min(len(self.text), SHOWN)
        p = self.p_of_chars(0, n)
        kept = ", ".join(sorted(self.states))
        head = (f"<p>A recording of a {self.num_layers} x {self.hidden_size} {self.kind.upper()} over "
                f"{len(self.text):,} characters ({self.positions.size:,} kept: {kept}); "
                f"{self.bits_per_char():.3f} bits per character. The first {n:,} characters on the "
                "probability the model gave each:</p>")
        return render.fragment(head + render.prediction_block(self.text[:n], p, None))


def _vocab_chars(vocab) -> list[str]:
    if getattr(vocab, "byte_level", False):
        raise UserError("understanding needs a character-level model; this checkpoint reads bytes")
    chars = getattr(vocab, "chars", None)
    chars = chars() if callable(chars) else chars
    return list(chars if chars is not None else vocab.symbols)


def encode_text(model, text: str, name: str = "the text",
                hint: str = "give it text in the model's vocabulary") -> np.ndarray:
    """The model's indices for `text`, or a UserError naming the characters it has never seen
    and ending with `hint` (what the caller's user can do about them)."""
    chars = _vocab_chars(model.vocab)
    index = {c: i for i, c in enumerate(chars)}
    try:
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    except KeyError:
        unseen = sorted({c for c in text if c not in index})
        shown = ", ".join(repr(c) for c in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        raise UserError(f"{name} has {len(unseen)} character(s) the model never saw ({shown}); "
                        f"{hint}") from None


def fit_to_vocabulary(model, text: str, unknown: str = "error", name: str = "the text",
                      hint: str = "remove them, or pass --unknown skip or --unknown replace") -> str:
    """`text` in the model's characters: with `unknown` "error" a UserError names the characters
    the model never saw (and ends with `hint`); "skip" drops them; "replace" puts a space there."""
    vocab = model.vocab
    if getattr(vocab, "byte_level", False) or not vocab.unknown(text):
        return text
    return vocab.decode(vocab.encode(text, unknown=unknown, what=name, hint=hint))


def _default_streams(n: int) -> int:
    # Long enough streams that starting from a zero state is rare; enough of them to keep the
    # matrix products wide (a batch of ~256 rows runs near the machine's matmul peak).
    return max(1, min(256, n // 2048))


@torch.no_grad()
def record(model, text: str, keys=None, positions=None, probs: bool = True, streams: int | None = None,
           window: int = 64, warmup: int = 0, name: str = "the text") -> Recording:
    """Run `model` over `text` and record every state, gate and prediction (see the module doc).

    keys        which quantities to keep ("h", "c", "i", ...); all the layer has by default
    positions   indices of the characters to keep (everything is computed, only these stored);
                all characters by default. logp_next always covers every character.
    probs       also keep the predicted distributions at the kept characters
    streams     number of parallel chunks S (default: ~one per 2048 characters, at most 256)
    window      characters per step of the carried loop (bounds the memory of one step)
    warmup      characters of context each stream but the first reads before its start
    """
    rnn = model.rnn
    cell, keys = _recordable(rnn, keys)
    ids = encode_text(model, text, name)
    N = len(ids)
    if N == 0:
        raise UserError(f"{name} is empty; give it at least one character")
    positions = np.arange(N) if positions is None else np.unique(np.asarray(positions, dtype=np.int64))
    if positions.size and (positions[0] < 0 or positions[-1] >= N):
        raise UserError(f"positions must lie in 0..{N - 1}")
    S = _default_streams(N) if streams is None else max(1, min(int(streams), N))
    Ls = -(-N // S)  # characters per stream; the last stream is padded at its end
    S = -(-N // Ls)  # no stream made only of padding
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    grid = _streams_of(ids, S, Ls).to(device)  # (S, Ls)
    next_grid = _streams_of(np.append(ids[1:], 0), S, Ls).to(device)  # (S, Ls): the character after each
    state = _warm_state(model, ids, S, Ls, warmup, device)
    states, kept_probs, logp_next = _run_windows(model, grid, next_grid, state, positions, keys, window,
                                                 N, probs)
    model.train(was_training)
    meta = {"streams": S, "stream_length": Ls, "window": window, "warmup": int(warmup) if S > 1 else 0}
    return Recording(text, positions, states, kept_probs, logp_next, _vocab_chars(model.vocab),
                     cell.name, rnn.num_layers, rnn.hidden_size, meta)


def _recordable(rnn, keys) -> tuple[CellFacts, tuple[str, ...]]:
    """The layer's cell facts and the keys to record (all it has by default), or a UserError."""
    try:
        cell = facts(rnn)
    except ValueError:
        raise UserError(f"cannot record a {type(rnn).__name__}; record works on RNN, LSTM, GRU, MinGRU and MinLSTM") from None
    if getattr(rnn, "bidirectional", False):
        raise UserError("a bidirectional model reads the future; record needs a left-to-right model")
    keys = tuple(cell.state_keys if keys is None else keys)
    for k in keys:
        if k not in cell.state_keys:
            raise UserError(f"a {cell.name} layer records {', '.join(cell.state_keys)}, not {k!r}")
    return cell, keys


def _streams_of(ids: np.ndarray, S: int, Ls: int) -> torch.Tensor:
    """(S, Ls): the N indices cut into S contiguous streams of Ls, the last padded with index 0."""
    grid = np.zeros(S * Ls, dtype=np.int64)
    grid[:len(ids)] = ids
    return torch.from_numpy(grid.reshape(S, Ls))


def _warm_state(model, ids, S: int, Ls: int, warmup: int, device):
    """The state each stream starts from: after reading the `warmup` characters before it, or None
    (zeros) without warmup."""
    if warmup <= 0 or S <= 1:
        return None
    w = min(int(warmup), Ls)
    lead = torch.from_numpy(_leads(ids, S, Ls, w)).to(device)  # (S, w)
    _, state = model.rnn.readable(model.embed(lead), None)
    # The first stream starts at the text's start; a stream with less than w characters
    # before it would read padding, so it starts from zeros too.
    return _zero_rows(state, [s for s in range(S) if s * Ls < w])


def _run_windows(model, grid, next_grid, state, positions, keys, window: int, N: int, probs: bool):
    """All streams advance `window` characters at a time, the state carried; keep the chosen
    quantities at the kept positions, and log p of every next character.

    -> (states {"h0": (K, H), ...}, probs (K, V) or None, logp_next (N,))."""
    S, Ls = grid.shape
    rnn, device = model.rnn, grid.device
    H, L, V = rnn.hidden_size, rnn.num_layers, len(_vocab_chars(model.vocab))
    out_states = {f"{k}{l}": np.empty((positions.size, H), dtype=np.float32) for k in keys for l in range(L)}
    out_probs = np.empty((positions.size, V), dtype=np.float32) if probs else None
    logp_next = np.full(N, np.nan, dtype=np.float32)
    # Kept characters, grouped by the window that computes them.
    stream_of, offset_of = positions // Ls, positions % Ls
    window_of = offset_of // window
    for k0 in range(0, Ls, window):
        idx = grid[:, k0:k0 + window]  # (S, W)
        out, state, trace = rnn.readable(model.embed(idx), state, record=True)  # out (S, W, H)
        logits = model.head(out)  # (S, W, V)
        logp = F.log_softmax(logits.float(), dim=-1)  # (S, W, V)
        lp = logp.gather(-1, next_grid[:, k0:k0 + window].unsqueeze(-1)).squeeze(-1)  # (S, W)
        flat = (np.arange(S)[:, None] * Ls + np.arange(k0, k0 + idx.shape[1])[None, :]).ravel()
        real = flat < N - 1  # the last character has no next one; padding has none either
        logp_next[flat[real]] = lp.reshape(-1).cpu().numpy()[real]
        sel = np.nonzero(window_of == k0 // window)[0]
        if sel.size == 0:
            continue
        s_t = torch.from_numpy(stream_of[sel]).to(device)
        o_t = torch.from_numpy(offset_of[sel] - k0).to(device)
        for l in range(L):
            for k in keys:
                out_states[f"{k}{l}"][sel] = trace[l][k][s_t, o_t].float().cpu().numpy()  # (n, H)
        if probs:
            out_probs[sel] = logp[s_t, o_t].exp().cpu().numpy()  # (n, V)
    return out_states, out_probs, logp_next


def _leads(ids, S, Ls, w) -> np.ndarray:
    """(S, w): the w characters before each stream's start, left-padded with index 0."""
    rows = np.zeros((S, w), dtype=np.int64)
    for s in range(S):
        seg = ids[max(0, s * Ls - w): s * Ls]
        rows[s, w - len(seg):] = seg
    return rows


def _zero_rows(state, rows):
    """Zero the carried state of the given streams."""
    if not rows:
        return state
    parts = state if isinstance(state, tuple) else (state,)
    for p in parts:
        p[:, rows] = 0
    return state


# --- saving -----------------------------------------------------------------------------------
def save_recording(rec: Recording, path) -> Path:
    """Write a recording as .npz or .safetensors (chosen by the suffix), atomically."""
    path = Path(path)
    arrays = {"positions": rec.positions.astype(np.int64), "logp_next": rec.logp_next,
              "text": np.frombuffer(rec.text.encode("utf-32-le"), dtype=np.uint32).copy()}
    arrays.update({f"states.{k}": v for k, v in rec.states.items()})
    if rec.probs is not None:
        arrays["probs"] = rec.probs
    meta = {"chars": rec.chars, "kind": rec.kind, "num_layers": rec.num_layers,
            "hidden_size": rec.hidden_size, "meta": rec.meta}
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.suffix == ".npz":
            arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8).copy()
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        elif path.suffix == ".safetensors":
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata={"unrolled_recording": json.dumps(meta)})
        else:
            raise UserError(f"cannot save a recording as {path.name}; name it .npz or .safetensors")
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write the recording {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_recording(path) -> Recording:
    """Read a recording written by `save_recording`."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta_json").tobytes().decode())
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads(f.metadata()["unrolled_recording"])
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        else:
            raise UserError(f"cannot read a recording from {path.name}; it must be .npz or .safetensors")
    except FileNotFoundError:
        raise UserError(f"no recording at {path}; make one with unrolled.understand.record") from None
    except UserError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{path} is not a recording written by unrolled ({type(e).__name__}); "
                        "record it again") from None
    text = arrays.pop("text").astype(np.uint32).tobytes().decode("utf-32-le")
    states = {k[len("states."):]: v for k, v in arrays.items() if k.startswith("states.")}
    return Recording(text, arrays["positions"], states, arrays.get("probs"), arrays["logp_next"],
                     meta["chars"], meta["kind"], meta["num_layers"], meta["hidden_size"], meta.get("meta", {}))
