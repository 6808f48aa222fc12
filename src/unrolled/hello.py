"""The lecture's "hello" example: vocabulary {h, e, l, o}, one-hot inputs, hidden size 3.

A vanilla RNN reads "hell" one character at a time and learns to predict "ello": after "h"
comes "e", after "e" comes "l", after the first "l" comes "l", after the second "l" comes "o".
The two "l"s look the same, so only the hidden state can tell them apart: a one-to-one model
cannot solve it, an RNN can. The same task is solved here twice, with the NumPy reference
(hand-written BPTT) and with `unrolled.RNN` (autograd); tests/test_hello.py checks both.
"""
from __future__ import annotations

import torch
from torch import nn

from unrolled import reference
from unrolled.recurrent import RNN

VOCAB = "helo"
WORD = "hello"


def encode(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text]


def decode(indices) -> str:
    return "".join(VOCAB[i] for i in indices)


def train_reference(steps: int = 300, hidden_size: int = 3, seed: int = 0) -> tuple[str, list[float]]:
    """Train the NumPy RNN on "hello"; return its predictions after "hell" and the losses."""
    p = reference.Params.init(len(VOCAB), hidden_size, seed=seed, scale=0.5)
    inputs, targets = encode(WORD[:-1]), encode(WORD[1:])
    losses = reference.adagrad_train(p, inputs, targets, steps=steps, lr=0.1)
    return decode(reference.predict(p, inputs)), losses


class HelloRNN(nn.Module):
    """one-hot x_t (V,) -> h_t = tanh(W_xh x_t + W_hh h_{t-1} + b) (H,) -> y_t = W_hy h_t + b_y (V,)."""

    def __init__(self, hidden_size: int = 3):
        super().__init__()
        self.rnn = RNN(len(VOCAB), hidden_size)
        self.head = nn.Linear(hidden_size, len(VOCAB))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        x = nn.functional.one_hot(indices, len(VOCAB)).to(self.head.weight.dtype)  # (B, T, V)
        h, _ = self.rnn(x)  # (B, T, H)
        return self.head(h)  # (B, T, V)


def train_unrolled(steps: int = 300, hidden_size: int = 3, seed: int = 0) -> tuple[str, list[float]]:
    """Train `unrolled.RNN` + a linear head on "hello"; return predictions after "hell" and losses."""
    torch.manual_seed(seed)
    model = HelloRNN(hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.tensor([encode(WORD[:-1])])  # (1, 4)
    y = torch.tensor([encode(WORD[1:])])  # (1, 4)
    losses = []
    for _ in range(steps):
        logits = model(x)  # (1, 4, V)
        # The total loss is the sum of the per-step losses, as in the lecture.
        loss = nn.functional.cross_entropy(logits.view(-1, len(VOCAB)), y.view(-1), reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        return decode(model(x).argmax(-1)[0].tolist()), losses


def main() -> int:
    for name, fn in (("numpy reference", train_reference), ("unrolled.RNN", train_unrolled)):
        pred, losses = fn()
        print(f"{name:16s} after 'h','e','l','l' predicts {' '.join(pred)}  "
              f"(loss {losses[0]:.3f} -> {losses[-1]:.3f} nats)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
