"""A stand-in character language model with CharLM's interface (vocab, rnn, head, embed,
forward), built from unrolled layers, for the understanding tests."""
import torch
from torch import nn

import unrolled


class Vocab:
    def __init__(self, text):
        self.symbols = sorted(set(text))
        self.byte_level = False
        self._index = {c: i for i, c in enumerate(self.symbols)}

    def encode(self, text):
        return [self._index[c] for c in text]

    def decode(self, idx):
        return "".join(self.symbols[i] for i in idx)

    def __len__(self):
        return len(self.symbols)

    @property
    def chars(self):
        return list(self.symbols)


class StandInLM(nn.Module):
    def __init__(self, chars, kind="lstm", embed=4, hidden=5, layers=2):
        super().__init__()
        self.vocab = Vocab(chars)
        self.embedding = nn.Embedding(len(self.vocab), embed)
        self.rnn = unrolled.recurrent.LAYERS[kind](embed, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, len(self.vocab))

    def embed(self, idx):
        return self.embedding(idx)  # (B, T, D)

    def forward(self, idx, state=None):
        out, state = self.rnn(self.embed(idx), state)  # (B, T, H)
        return self.head(out), state  # (B, T, V)
