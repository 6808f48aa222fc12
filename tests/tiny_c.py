"""What the understanding and evidence command tests share: a small C text and a real tiny LSTM
checkpoint trained on it (tests/test_understand_cli.py, tests/test_evidence_cli.py)."""
from __future__ import annotations

from pathlib import Path

from unrolled.charlm.trainer import train

CODE = ('/* a "comment" */\nint f(int x) {\n\tif (x < 2 && x > 0) {\n\t\treturn g("a<b&c", \'"\');\n'
        '\t}\n\treturn x; // done\n}\n') * 8


def train_tiny_c(d: Path) -> Path:
    """Write CODE to d/code.c, train a 2 x 5 LSTM on it for 3 steps into d/run; -> d."""
    corpus = d / "code.c"
    corpus.write_text(CODE)
    train(paths=[str(corpus)], cell="lstm", hidden_size=5, num_layers=2, embedding_size=4, batch_size=2,
          seq_len=16, max_steps=3, eval_every=3, out=str(d / "run"), progress=False)
    return d
