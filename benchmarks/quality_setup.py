"""What the two equal-wall-clock quality benchmarks (quality.py, minimal_quality.py) share: the
corpora they read, the flags that size the model and the run, the opening of their result and
how it is written out (--out: only once something was measured, never half a file).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"shakespeare": "shakespeare/works.txt", "linux": "linux/kernel.txt"}


def not_a_corpus(script: str, path: Path) -> bool:
    """True (after saying so in one sentence on stderr) when a corpus argument is not a file."""
    if path.is_file():
        return False
    print(f"{script}: {path} is not a file; give a UTF-8 text corpus", file=sys.stderr)
    return True


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
    ap.add_argument("--out", default=None, metavar="FILE",
                    help="also write the JSON to FILE, replacing it only once the run has measured something")


def start(args, name: str) -> tuple[Path, dict] | None:
    """Set the torch threads and find the corpora: (the data folder, the result so far: the
    machine and the settings), or None, said on stderr in one sentence naming what is missing,
    when a corpus is not under --data (the project does not ship them)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out and not Path(args.out).resolve().parent.is_dir():
        print(f"{name}: the folder of --out {args.out} does not exist; create it or name another file "
              "(nothing was measured).", file=sys.stderr)
        return None
    data = Path(args.data)
    missing = [c for c in args.corpora if not (data / CORPORA[c]).is_file()]
    if missing:
        kept = f" and {args.out} is left as it was" if args.out else ""
        print(f"{name}: {' and '.join(CORPORA[c] for c in missing)} not found under {data} "
              "(docs/topologies.md#results and models/linux-lstm-2x128/README.md#the-linux-corpus say how to "
              f"make them; --data names another folder), so nothing was measured{kept}.", file=sys.stderr)
        return None
    return data, {"machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                              "torch": torch.__version__, "python": platform.python_version()},
                  "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")}}


def write_result(result: dict, out: str | None) -> None:
    """The result as JSON on stdout and, with --out, in that file: written to a temporary file
    beside it and moved over it in one step, so an interrupted run never leaves half a file."""
    text = json.dumps(result, indent=1)
    print(text)
    if out is None:
        return
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
