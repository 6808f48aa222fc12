"""The Linux corpus the benchmarks on it read (train_linux_lstm.py, understand_linux.py,
evidence_linux.py). The project does not ship it; a missing file is said in one sentence, with
where to get it, instead of a traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

HOW = "models/linux-lstm-2x128/README.md#the-linux-corpus"


def have_kernel(path: str, script: str) -> bool:
    """True when `path` is a file; otherwise says so on stderr and returns False (exit with 2)."""
    if Path(path).is_file():
        return True
    print(f"{script}: the Linux corpus {path} is not a file; make kernel.txt as {HOW} says and give "
          "its path.", file=sys.stderr)
    return False
