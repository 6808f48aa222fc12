"""The two models every contender is built from, and the text they read.

    PlainCharModel  nn.Embedding -> nn.LSTM/GRU/RNN -> nn.Linear: the loop a user writes with torch.nn
    make_lm         CharLM with the config's defaults: what `unrolled train` builds
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from unrolled.charlm.config import ModelConfig
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import default_corpus

TORCH_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class PlainCharModel(nn.Module):
    """The plain PyTorch character model: embedding, torch.nn recurrent layer, linear head."""

    def __init__(self, cell: str, V: int, E: int, H: int, L: int):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = TORCH_LAYERS[cell](E, H, L, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        h, state = self.rnn(self.embedding(idx), state)  # (B, T, H)
        return self.head(h), state  # (B, T, V)


def make_lm(cell: str, H: int, L: int, vocab, device) -> CharLM:
    """The model `unrolled train` builds: CharLM with the config's defaults for everything else."""
    return CharLM(vocab, ModelConfig(cell=cell, hidden_size=H, num_layers=L)).to(device)


def corpus_text(max_chars: int = 2_000_000) -> str:
    """Real text for the benchmark: the shared Shakespeare corpus beside the repository when it
    is there, else the project's default corpus (the Python standard library's source)."""
    here = Path(__file__).resolve()
    for root in here.parents:
        candidate = root.parent / "shared" / "data" / "shakespeare" / "works.txt"
        if (root / "pyproject.toml").exists() and candidate.exists():
            return candidate.read_text(encoding="utf-8")[:max_chars]
    return default_corpus(max_chars)
