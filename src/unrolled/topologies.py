"""The five shapes of a sequence problem, each a recurrent layer between an input encoding and a head.

    one-to-one     x -> y                       OneToOne      (one step from the zero state)
    one-to-many    x -> y_1 .. y_T              OneToMany     (x sets h_0 and/or is fed at every step;
                                                               y_{t-1} is fed back as the next input)
    many-to-one    x_1 .. x_T -> y              ManyToOne     (head on the last state)
    many-to-many   x_1 .. x_T -> y_1 .. y_T     ManyToMany    (head on every step, aligned)
    many-to-many   x_1 .. x_S -> y_1 .. y_T     EncoderDecoder (encoder's last state starts the decoder)

Every topology composes the same parts: an input encoding (`dense` vectors, `onehot` or
`embedding` of token ids), one of `unrolled.RNN/LSTM/GRU` (any depth, width, dropout, and
`bidirectional` where the whole input is known in advance), and a head (`classify`: logits and
cross-entropy; `regress`: values and mean squared error).

Shapes (batch first): dense x (B, T, D), token ids (B, T); lengths (B,) give each row's real
length. Padding is never read: the layer packs (fast path) or masks (readable path), the
many-to-one head reads the state after each row's own last step, and losses average over real
steps only, so a padded batch gives the same outputs and loss as its rows one by one
(tests/test_topologies.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.recurrent import LAYERS, LSTM, _reverse_within

ENCODINGS = ("dense", "onehot", "embedding")
HEADS = ("classify", "regress")
POOLS = ("last", "mean", "max")


# --- input encodings ----------------------------------------------------------------------------
class Dense(nn.Module):
    """x_t is already a vector (B, T, D): passed through unchanged."""

    def __init__(self, size: int):
        super().__init__()
        self.input_size = self.output_size = size

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_floating_point(x) or x.shape[-1] != self.input_size:
            raise ValueError(f"dense input must be floating point with last dimension {self.input_size}, "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        return x


class OneHot(nn.Module):
    """Token id k -> the unit vector e_k of size V: no parameters, every symbol equally far apart."""

    def __init__(self, num_tokens: int):
        super().__init__()
        self.num_tokens = self.output_size = num_tokens
        self.register_buffer("_like", torch.empty(0), persistent=False)  # follows .double() / .to()

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.num_tokens, "input")
        return F.one_hot(ids, self.num_tokens).to(self._like.dtype)  # (B, T, V)


class Embedding(nn.Embedding):
    """Token id k -> row k of a learned table E (V, E): x_t = E[k]."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__(num_tokens, dim)
        self.output_size = dim

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.num_embeddings, "input")
        return super().forward(ids)  # (B, T, E)


def check_token_ids(ids: Tensor, num_tokens: int, what: str) -> None:
    """Token ids must be integers in 0..V-1; say which one is not."""
    if torch.is_floating_point(ids) or ids.dtype == torch.bool:
        raise ValueError(f"{what} token ids must be integers, got {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_tokens):
        bad = ids[(ids < 0) | (ids >= num_tokens)][0].item()
        raise ValueError(f"{what} token id {bad} is outside the vocabulary 0..{num_tokens - 1}")


def make_encoding(kind: str, size: int, embedding_dim: int | None = None) -> nn.Module:
    """`dense` (size = D), `onehot` (size = V) or `embedding` (size = V, width embedding_dim)."""
    if kind == "dense":
        return Dense(size)
    if kind == "onehot":
        return OneHot(size)
    if kind == "embedding":
        return Embedding(size, embedding_dim or min(64, size))
    raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {kind!r}")


# --- heads --------------------------------------------------------------------------------------
class ClassificationHead(nn.Linear):
    """logits = W h + b (C classes); loss = -log softmax(logits)[target]; prediction = argmax."""

    kind = "classify"

    def loss_terms(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-item cross-entropy: logits (..., C), target (...) class ids -> (...)."""
        check_token_ids(target, self.out_features, "target")
        return F.cross_entropy(logits.reshape(-1, self.out_features), target.reshape(-1),
                               reduction="none").view(target.shape)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(-1)


class RegressionHead(nn.Linear):
    """y = W h + b (K values); loss = mean over the K values of (y - target)^2; prediction = y."""

    kind = "regress"

    def loss_terms(self, y: Tensor, target: Tensor) -> Tensor:
        if target.shape != y.shape:
            raise ValueError(f"regression target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        return (y - target).pow(2).mean(-1)

    def predict(self, y: Tensor) -> Tensor:
        return y


def make_head(kind: str, in_features: int, output_size: int) -> nn.Linear:
    if kind == "classify":
        return ClassificationHead(in_features, output_size)
    if kind == "regress":
        return RegressionHead(in_features, output_size)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")


def reduce_loss(terms: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    """Mean (over real items only), sum, or none (padding zeroed) of per-item losses."""
    if mask is not None:
        terms = terms * mask
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.sum() / (mask.sum() if mask is not None else terms.numel())
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# --- shared checks ------------------------------------------------------------------------------
def check_lengths(batch: int, steps: int, lengths, max_length: int | None, what: str = "sequence"):
    """-> lengths as a (B,) long tensor (all T when None); empty or over-long rows are refused."""
    if steps == 0:
        raise ValueError(f"empty {what} (T = 0); every {what} needs at least one step")
    if lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long)
    else:
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (batch,):
            raise ValueError(f"{what} lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.min() < 1:
            row = int((lengths < 1).nonzero()[0])
            raise ValueError(f"empty {what} at batch row {row} (length {int(lengths[row])}); "
                             f"drop it or give it at least one step")
        if lengths.max() > steps:
            raise ValueError(f"{what} lengths go up to {int(lengths.max())} but the batch has only {steps} steps")
    if max_length is not None and int(lengths.max()) > max_length:
        raise ValueError(f"{what} of length {int(lengths.max())} is longer than this model's "
                         f"max_length={max_length}; cut it into pieces or build the model with a larger max_length")
    return lengths


def step_mask(lengths: Tensor, steps: int, like: Tensor) -> Tensor:
    """(B, T) with 1 at the real steps of each row and 0 at padding."""
    t = torch.arange(steps, device=like.device).unsqueeze(0)  # (1, T)
    return (t < lengths.to(like.device).unsqueeze(1)).to(like.dtype)  # (B, T)


def top_state(layer, state) -> Tensor:
    """The last layer's final hidden state, both directions side by side: (B, H * dirs)."""
    h = state[0] if isinstance(state, tuple) else state  # (L * dirs, B, H)
    top = h[-layer.num_directions:]  # (dirs, B, H)
    return top.permute(1, 0, 2).reshape(top.shape[1], -1)  # (B, H * dirs)


class _Topology(nn.Module):
    """Encoding -> recurrent layer -> head, with the checks every topology shares."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int, cell: str = "lstm",
                 num_layers: int = 1, encoding: str = "dense", embedding_dim: int | None = None,
                 head: str = "classify", dropout: float = 0.0, bidirectional: bool = False,
                 max_length: int | None = None, path: str = "auto"):
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        self.cell, self.max_length = cell, max_length
        self.encode = make_encoding(encoding, input_size, embedding_dim)
        self.rnn = LAYERS[cell](self.encode.output_size, hidden_size, num_layers, dropout=dropout,
                                bidirectional=bidirectional, path=path)
        self.head = make_head(head, self.rnn.output_size, output_size)

    def _steps(self, x: Tensor) -> tuple[int, int]:
        dense = isinstance(self.encode, Dense)
        if x.dim() != (3 if dense else 2):
            want = "(B, T, D) vectors" if dense else "(B, T) token ids"
            raise ValueError(f"{type(self).__name__} expects {want}, got shape {tuple(x.shape)}")
        return x.shape[0], x.shape[1]

    def predict(self, *args, **kwargs) -> Tensor:
        """Class ids (argmax) for a classification head, values for a regression head."""
        return self.head.predict(self(*args, **kwargs))


# --- the five topologies ------------------------------------------------------------------------
class ManyToOne(_Topology):
    """Read a whole sequence, answer once:

        h_t = cell(x_t, h_{t-1}),  t = 1..T_b        y = head(h_{T_b})          (pool="last")

    where T_b is row b's own length. Bidirectional: y = head([h_fwd_{T_b}; h_rev_1]), the
    backward direction's state after it has read the sequence from its end to its start.
    pool="mean" or "max" answers from the mean or the elementwise max of h_1..h_{T_b} instead
    (every step then has a short gradient path to the loss, which helps when the evidence may sit
    anywhere in a long sequence). x (B, T, D) or ids (B, T) -> (B, C) logits or (B, K) values.
    """

    def __init__(self, input_size, output_size, hidden_size, cell="lstm", pool: str = "last", **kw):
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        super().__init__(input_size, output_size, hidden_size, cell, **kw)
        self.pool = pool

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out, final = self.rnn(self.encode(x), state, lengths)  # out (B, T, H * dirs), final (L * dirs, B, H)
        if self.pool == "last":
            return self.head(top_state(self.rnn, final))  # (B, C)
        mask = step_mask(lengths, T, out).unsqueeze(2)  # (B, T, 1)
        if self.pool == "mean":
            summary = (out * mask).sum(1) / mask.sum(1)  # (B, H * dirs)
        else:
            summary = out.masked_fill(mask == 0, float("-inf")).amax(1)  # (B, H * dirs)
        return self.head(summary)  # (B, C)

    def loss(self, x: Tensor, target: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        return reduce_loss(self.head.loss_terms(self(x, lengths), target), None, reduction)


class OneToOne(ManyToOne):
    """No recurrence: one step of the cell from the zero state, then the head:

        h = cell(x, 0)  (for the RNN: h = tanh(W_ih x + b_ih + b_hh))      y = head(h)

    W_hh never matters (it multiplies h_0 = 0), so this is a feed-forward network built from the
    very same layer: the baseline that shows what the recurrence adds. x (B, D) or ids (B,) ->
    (B, C) or (B, K).
    """

    def __init__(self, input_size, output_size, hidden_size, cell="rnn", **kw):
        if kw.get("bidirectional"):
            raise ValueError("OneToOne has a single step, so bidirectional means nothing; leave it False")
        super().__init__(input_size, output_size, hidden_size, cell, **kw)

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        want = 2 if isinstance(self.encode, Dense) else 1
        if x.dim() != want:
            shape = "(B, D) vectors" if want == 2 else "(B,) token ids"
            raise ValueError(f"OneToOne expects {shape}, got shape {tuple(x.shape)}")
        return super().forward(x.unsqueeze(1))  # one step: (B, 1, D) -> (B, C)


class ManyToMany(_Topology):
    """Aligned: one output for every input, y_t = head(h_t). Bidirectional: h_t = [h_fwd_t; h_rev_t],
    so a label may depend on what follows as well as on what came before.

    x (B, T, D) or ids (B, T) -> (B, T, C) or (B, T, K); padded steps give zeros before the head
    and are left out of the loss.
    """

    def forward(self, x: Tensor, lengths=None, state=None) -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out, _ = self.rnn(self.encode(x), state, lengths)  # (B, T, H * dirs)
        return self.head(out)  # (B, T, C)

    def loss(self, x: Tensor, target: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        B, T = self._steps(x)
        lengths = check_lengths(B, T, lengths, self.max_length)
        out = self(x, lengths)  # (B, T, C)
        target = _zero_padding(target, lengths, self.head)
        return reduce_loss(self.head.loss_terms(out, target), step_mask(lengths, T, out), reduction)


def _zero_padding(target: Tensor, lengths: Tensor, head) -> Tensor:
    """Padding in targets may hold anything (e.g. -1); make it a valid class so the check passes."""
    if head.kind != "classify":
        return target
    keep = step_mask(lengths, target.shape[1], target).bool()  # (B, T)
    return torch.where(keep, target, torch.zeros_like(target))


class OneToMany(nn.Module):
    """One input, a sequence out, each output fed back as the next input:

        c   = enc(x)                               a class id or a vector
        h_0 = tanh(W_0 c + b_0)                    if init_state (else zeros)
        h_t = cell([emb(y_{t-1}); c], h_{t-1})      c only if feed_input; y_0 = a start symbol
        y_t ~ head(h_t)

    Training feeds the true y_{t-1} (teacher forcing); `generate` feeds back its own outputs.
    With a classification head y_t are tokens of a vocabulary of size V (the start symbol is an
    extra id V); with a regression head y_t are K-vectors and the start is the zero vector.

    x: (B,) class ids (input="class") or (B, D) vectors (input="vector"); targets (B, T) token ids
    or (B, T, K) -> (B, T, V) logits or (B, T, K) values.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, cell: str = "lstm",
                 num_layers: int = 1, input: str = "class", head: str = "classify",
                 input_dim: int = 16, embedding_dim: int = 32, init_state: bool = True,
                 feed_input: bool = True, dropout: float = 0.0, max_length: int | None = None,
                 path: str = "auto"):
        super().__init__()
        if input not in ("class", "vector"):
            raise ValueError(f"input must be 'class' or 'vector', got {input!r}")
        if not (init_state or feed_input):
            raise ValueError("OneToMany needs init_state or feed_input (or both), else the input is never seen")
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        self.input_kind, self.cell, self.max_length = input, cell, max_length
        self.init_state, self.feed_input = init_state, feed_input
        self.num_classes = input_size if input == "class" else None
        self.condition = Embedding(input_size, input_dim) if input == "class" else Dense(input_size)
        c_dim = self.condition.output_size
        if head == "classify":
            self.feedback = Embedding(output_size + 1, embedding_dim)  # + 1: the start symbol
            self.start_token = output_size
        else:
            self.feedback = Dense(output_size)
        step_in = self.feedback.output_size + (c_dim if feed_input else 0)
        self.rnn = LAYERS[cell](step_in, hidden_size, num_layers, dropout=dropout, path=path)
        self.to_state = nn.Linear(c_dim, num_layers * hidden_size) if init_state else None
        self.head = make_head(head, hidden_size, output_size)

    def encode_condition(self, x: Tensor) -> Tensor:
        """x (B,) class ids or (B, D) vectors -> c (B, E); refuses unknown classes."""
        if self.input_kind == "class":
            if x.dim() != 1:
                raise ValueError(f"OneToMany expects (B,) class ids, got shape {tuple(x.shape)}")
            if torch.is_floating_point(x) or (x.numel() and (x.min() < 0 or x.max() >= self.num_classes)):
                bad = x[(x < 0) | (x >= self.num_classes)][0].item() if not torch.is_floating_point(x) else x.dtype
                raise ValueError(f"unknown class {bad}: OneToMany knows classes 0..{self.num_classes - 1}")
            return self.condition(x.unsqueeze(1)).squeeze(1)  # (B, E)
        if x.dim() != 2:
            raise ValueError(f"OneToMany expects (B, D) vectors, got shape {tuple(x.shape)}")
        return self.condition(x)  # (B, D)

    def initial_state(self, c: Tensor):
        """h_0 = tanh(W_0 c + b_0) (zeros when init_state is off); the LSTM's c_0 starts at zero."""
        B, L, H = c.shape[0], self.rnn.num_layers, self.rnn.hidden_size
        if self.to_state is None:
            return self.rnn.zero_state(B, c)
        h0 = torch.tanh(self.to_state(c)).view(B, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        return (h0, torch.zeros_like(h0)) if isinstance(self.rnn, LSTM) else h0

    def _step_inputs(self, previous: Tensor, c: Tensor) -> Tensor:
        """previous outputs (B, T) ids or (B, T, K) -> step inputs (B, T, E [+ E_c])."""
        z = self.feedback(previous)  # (B, T, E)
        if self.feed_input:
            z = torch.cat([z, c.unsqueeze(1).expand(-1, z.shape[1], -1)], dim=2)  # (B, T, E + E_c)
        return z

    def _shift_right(self, targets: Tensor) -> Tensor:
        """y_1..y_T -> start, y_1..y_{T-1}: the inputs that teacher forcing feeds."""
        if self.head.kind == "classify":
            start = torch.full_like(targets[:, :1], self.start_token)  # (B, 1)
        else:
            start = torch.zeros_like(targets[:, :1])  # (B, 1, K)
        return torch.cat([start, targets[:, :-1]], dim=1)

    def forward(self, x: Tensor, targets: Tensor, lengths=None) -> Tensor:
        """Teacher forcing: logits (B, T, V) (or values (B, T, K)) for every step of targets."""
        B, T = targets.shape[0], targets.shape[1]
        lengths = check_lengths(B, T, lengths, self.max_length, "output sequence")
        c = self.encode_condition(x)  # (B, E_c)
        if self.head.kind == "classify":
            targets = _zero_padding(targets, lengths, self.head)
            check_token_ids(targets, self.head.out_features, "target")
        z = self._step_inputs(self._shift_right(targets), c)  # (B, T, E + E_c)
        out, _ = self.rnn(z, self.initial_state(c), lengths)  # (B, T, H)
        return self.head(out)  # (B, T, V)

    def loss(self, x: Tensor, targets: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        T = targets.shape[1]
        lengths = check_lengths(targets.shape[0], T, lengths, self.max_length, "output sequence")
        out = self(x, targets, lengths)
        targets = _zero_padding(targets, lengths, self.head)
        return reduce_loss(self.head.loss_terms(out, targets), step_mask(lengths, T, out), reduction)

    @torch.no_grad()
    def generate(self, x: Tensor, steps: int, temperature: float = 1.0, argmax: bool = False,
                 generator: torch.Generator | None = None) -> Tensor:
        """Feed each output back as the next input for `steps` steps -> (B, steps) ids or (B, steps, K).

        Tokens are drawn from softmax(logits / temperature) (or the argmax); vectors are fed back as
        they come out.
        """
        if self.max_length is not None and steps > self.max_length:
            raise ValueError(f"cannot generate {steps} steps: this model's max_length is {self.max_length}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if not argmax and temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        c = self.encode_condition(x)  # (B, E_c)
        state = self.initial_state(c)
        if self.head.kind == "classify":
            previous = torch.full((c.shape[0], 1), self.start_token, dtype=torch.long, device=c.device)
        else:
            previous = c.new_zeros(c.shape[0], 1, self.head.out_features)  # (B, 1, K)
        outputs = []
        for _ in range(steps):
            h, state = self.rnn(self._step_inputs(previous, c), state)  # h (B, 1, H)
            y = self.head(h)  # (B, 1, V) or (B, 1, K)
            if self.head.kind == "classify":
                if argmax:
                    previous = y.argmax(-1)  # (B, 1)
                else:
                    probs = F.softmax(y[:, 0] / temperature, dim=-1)  # (B, V)
                    previous = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            else:
                previous = y
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class EncoderDecoder(nn.Module):
    """Many-to-many with different lengths (sequence to sequence, Sutskever et al. 2014):

        encoder:  h_s = enc(emb_x(x_s), h_{s-1}),   s = 1..S_b        (optionally bidirectional)
        bridge:   g_0 = h_{S_b}                     (both directions side by side per layer)
        decoder:  g_t = dec(emb_y(y_{t-1}), g_{t-1}),  y_0 = <bos>
                  p(y_t | y_<t, x) = softmax(W g_t + b)

    Training feeds the true y_{t-1} with probability `teacher_forcing` (per row and step) and the
    decoder's own argmax otherwise; decoding (greedy or beam search, `unrolled.beam`) stops at
    <eos> or at a length limit. `reverse_source=True` reads each source backwards, as Sutskever
    et al. do, so the first words of source and target sit close together.

    x (B, S) source ids, y (B, T) target ids ending in <eos> -> logits (B, T, V_out).
    """

    def __init__(self, source_vocab: int, target_vocab: int, hidden_size: int, cell: str = "lstm",
                 num_layers: int = 1, embedding_dim: int = 32, bidirectional: bool = False,
                 dropout: float = 0.0, bos_token: int = 1, eos_token: int = 2,
                 reverse_source: bool = False, max_source_length: int | None = None,
                 max_target_length: int = 100, path: str = "auto"):
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        for name, tok in (("bos_token", bos_token), ("eos_token", eos_token)):
            if not 0 <= tok < target_vocab:
                raise ValueError(f"{name}={tok} is outside the target vocabulary 0..{target_vocab - 1}")
        self.cell, self.bos_token, self.eos_token = cell, bos_token, eos_token
        self.reverse_source, self.max_source_length = reverse_source, max_source_length
        self.max_target_length = max_target_length
        dirs = 2 if bidirectional else 1
        self.source_embedding = Embedding(source_vocab, embedding_dim)
        self.encoder = LAYERS[cell](embedding_dim, hidden_size, num_layers, dropout=dropout,
                                    bidirectional=bidirectional, path=path)
        self.target_embedding = Embedding(target_vocab, embedding_dim)
        # The decoder is as wide as the encoder's two directions together, so its state is theirs.
        self.decoder = LAYERS[cell](embedding_dim, hidden_size * dirs, num_layers, dropout=dropout, path=path)
        self.head = ClassificationHead(hidden_size * dirs, target_vocab)

    # --- encoder ----------------------------------------------------------------------------
    def encode(self, x: Tensor, lengths=None):
        """Source ids (B, S) -> the decoder's initial state (L, B, H * dirs) ((h, c) for the LSTM)."""
        if x.dim() != 2:
            raise ValueError(f"EncoderDecoder expects (B, S) source token ids, got shape {tuple(x.shape)}")
        lengths = check_lengths(x.shape[0], x.shape[1], lengths, self.max_source_length, "source sequence")
        if self.reverse_source:
            x = _reverse_within(x, lengths)
        _, final = self.encoder(self.source_embedding(x), None, lengths)  # (L * dirs, B, H)
        return self._bridge(final)

    def _bridge(self, state):
        """(L * dirs, B, H) -> (L, B, dirs * H): per layer, the forward and backward states side by side."""
        if isinstance(state, tuple):
            return tuple(self._bridge(s) for s in state)
        L, dirs = self.encoder.num_layers, self.encoder.num_directions
        _, B, H = state.shape
        return state.view(L, dirs, B, H).permute(0, 2, 1, 3).reshape(L, B, dirs * H).contiguous()

    # --- decoder ----------------------------------------------------------------------------
    def decode_step(self, previous: Tensor, state):
        """One decoder step: previous token ids (N,) -> (log-probabilities (N, V), new state)."""
        out, state = self.decoder(self.target_embedding(previous.unsqueeze(1)), state)  # (N, 1, H)
        return F.log_softmax(self.head(out[:, 0]), dim=-1), state  # (N, V)

    def forward(self, x: Tensor, y: Tensor, source_lengths=None, target_lengths=None,
                teacher_forcing: float = 1.0) -> Tensor:
        """Logits (B, T, V) for every target step; the decoder reads <bos>, y_1, ... (teacher forcing)."""
        if y.dim() != 2:
            raise ValueError(f"EncoderDecoder expects (B, T) target token ids, got shape {tuple(y.shape)}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {teacher_forcing}")
        B, T = y.shape
        target_lengths = check_lengths(B, T, target_lengths, self.max_target_length, "target sequence")
        y = _zero_padding(y, target_lengths, self.head)
        check_token_ids(y, self.head.out_features, "target")
        state = self.encode(x, source_lengths)
        bos = torch.full_like(y[:, :1], self.bos_token)  # (B, 1)
        if teacher_forcing >= 1.0:  # every input known in advance: one fused call over all steps
            inputs = torch.cat([bos, y[:, :-1]], dim=1)  # (B, T)
            out, _ = self.decoder(self.target_embedding(inputs), state, target_lengths)  # (B, T, H)
            return self.head(out)  # (B, T, V)
        logits, previous = [], bos[:, 0]
        for t in range(T):  # each input depends on the previous output: step by step
            out, state = self.decoder(self.target_embedding(previous.unsqueeze(1)), state)  # (B, 1, H)
            step = self.head(out[:, 0])  # (B, V)
            logits.append(step)
            truth = torch.rand(B, device=y.device) < teacher_forcing  # (B,)
            previous = torch.where(truth, y[:, t], step.detach().argmax(-1))
        return torch.stack(logits, dim=1)  # (B, T, V)

    def loss(self, x: Tensor, y: Tensor, source_lengths=None, target_lengths=None,
             teacher_forcing: float = 1.0, reduction: str = "mean") -> Tensor:
        B, T = y.shape
        target_lengths = check_lengths(B, T, target_lengths, self.max_target_length, "target sequence")
        logits = self(x, y, source_lengths, target_lengths, teacher_forcing)
        y = _zero_padding(y, target_lengths, self.head)
        return reduce_loss(self.head.loss_terms(logits, y), step_mask(target_lengths, T, logits), reduction)

    def greedy(self, x: Tensor, lengths=None, max_length: int | None = None) -> list[list[int]]:
        """The argmax at every step until <eos>; see `unrolled.beam.greedy_decode`."""
        from unrolled.beam import greedy_decode
        return greedy_decode(self, x, lengths, max_length)

    def beam_search(self, x: Tensor, lengths=None, beam_width: int = 4, max_length: int | None = None,
                    length_penalty: float = 0.0) -> list[list[int]]:
        """The most probable outputs a beam of `beam_width` finds; see `unrolled.beam.beam_search`."""
        from unrolled.beam import beam_search
        return beam_search(self, x, lengths, beam_width, max_length, length_penalty)[0]
