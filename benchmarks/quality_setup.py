"""What the two equal-wall-clock quality benchmarks (quality.py, minimal_quality.py) share: the
corpora they read, the flags that size the model and the run, and the opening of their result.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"shakespeare": "shakespeare/works.txt", "linux": "linux/kernel.txt"}


def add_run_arguments(ap) -> None:
    """--data and --corpora (where the texts are, which to read), the model's size, the batch,
    the window, the torch threads and the seed."""
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                    help="folder holding shakespeare/works.txt and linux/kernel.txt (default ../shared/data)")
    ap.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--embedding-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the whole run (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)


def start(args, name: str) -> tuple[Path, dict] | None:
    """Set the torch threads and find the corpora: (the data folder, the result so far: the
    machine and the settings), or None, said on stderr as `name: ... nothing measured`, when a
    corpus is not under --data (the project does not ship them)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    missing = [c for c in args.corpora if not (data / CORPORA[c]).exists()]
    if missing:
        print(f"{name}: {', '.join(CORPORA[c] for c in missing)} not found under {data}; nothing measured",
              file=sys.stderr)
        return None
    return data, {"machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                              "torch": torch.__version__, "python": platform.python_version()},
                  "settings": {k: v for k, v in vars(args).items() if k != "data"}}
