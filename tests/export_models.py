"""What the exporters' tests (tests/test_export_onnx.py, tests/test_export_page.py) share: the
committed model, a tiny character set and prime, and tiny random CharLMs to export. Nothing here
needs onnx, so the page's tests run where the ONNX ones skip themselves."""
from __future__ import annotations

from pathlib import Path

import torch

from unrolled.charlm.config import ModelConfig
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary

COMMITTED = Path(__file__).resolve().parents[1] / "models" / "linux-lstm-2x128"
CHARS = "abcdefgh é\n;{}"  # V = 14
LINUX_PRIME = "static int probe(struct device *dev)\n{\n\tint err = 0;"  # 51 characters


def tiny(cell: str, layers: int, embedding: int, seed: int = 0) -> CharLM:
    """A CharLM over CHARS, hidden size 5, its weights 1.5x torch's init (in eval mode)."""
    torch.manual_seed(seed)
    model = CharLM(Vocabulary.from_text(CHARS), ModelConfig(cell=cell, hidden_size=5, num_layers=layers,
                                                            embedding_size=embedding))
    # Weights 1.5x torch's init, so the gates work away from 0. Much larger ones make a chaotic
    # RNN, where float32 rounding alone changes the greedy text (at 2.5x, torch's own fused and
    # readable paths part from its stepper after about 140 characters): no exporter is exact there.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    return model.eval()
