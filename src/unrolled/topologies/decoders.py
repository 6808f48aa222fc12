"""The topologies that feed each output back as the next input: one-to-many and the
encoder-decoder. Training feeds the true previous output (teacher forcing); generating and
decoding (greedy and beam search, `unrolled.beam`) feed back the model's own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled import beam
from unrolled.recurrent import LAYERS, LSTM, _reverse_within
from unrolled.topologies.parts import (ClassificationHead, Dense, Embedding, check_lengths, check_token_ids,
                                       make_head, reduce_loss, step_mask, zero_padding)


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
            targets = zero_padding(targets, lengths, self.head)
            check_token_ids(targets, self.head.out_features, "target")
        z = self._step_inputs(self._shift_right(targets), c)  # (B, T, E + E_c)
        out, _ = self.rnn(z, self.initial_state(c), lengths)  # (B, T, H)
        return self.head(out)  # (B, T, V)

    def loss(self, x: Tensor, targets: Tensor, lengths=None, reduction: str = "mean") -> Tensor:
        T = targets.shape[1]
        lengths = check_lengths(targets.shape[0], T, lengths, self.max_length, "output sequence")
        out = self(x, targets, lengths)
        targets = zero_padding(targets, lengths, self.head)
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
        y = zero_padding(y, target_lengths, self.head)
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
        y = zero_padding(y, target_lengths, self.head)
        return reduce_loss(self.head.loss_terms(logits, y), step_mask(target_lengths, T, logits), reduction)

    def greedy(self, x: Tensor, lengths=None, max_length: int | None = None) -> list[list[int]]:
        """The argmax at every step until <eos>; see `unrolled.beam.greedy_decode`."""
        return beam.greedy_decode(self, x, lengths, max_length)

    def beam_search(self, x: Tensor, lengths=None, beam_width: int = 4, max_length: int | None = None,
                    length_penalty: float = 0.0) -> list[list[int]]:
        """The most probable outputs a beam of `beam_width` finds; see `unrolled.beam.beam_search`."""
        return beam.beam_search(self, x, lengths, beam_width, max_length, length_penalty)[0]
