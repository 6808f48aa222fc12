"""A tiny trained character model and C-like texts, shared by the viewer's tests.

The model is trained once per test process through the library (`unrolled.train`) on
generated C-like code (comments, strings, if-conditions, nested brackets), in about two seconds,
so the tests need no file from outside the repository.
"""
from __future__ import annotations

import contextlib
import random
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

_CACHE: dict[str, Path] = {}

NAMES = ["count", "size", "node", "head", "flags", "len", "buf", "err", "next", "prev", "page", "task"]
CALLS = ["lock", "unlock", "free", "alloc", "init", "put", "get", "wake", "check"]


def c_like(n_chars: int, seed: int) -> str:
    """Generated C-like code of about n_chars characters (deterministic for a seed)."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < n_chars:
        a, b, f = rng.choice(NAMES), rng.choice(NAMES), rng.choice(CALLS)
        lines = [f"/* {f} the {a} of a {b} */",
                 f"static int {f}_{a}(struct {b} *{b})",
                 "{",
                 f"\tint {a} = {rng.randint(0, 99)};",
                 f"\tif ({b}->{a} > {rng.randint(1, 9)} && ({a} & {rng.randint(1, 64)})) {{",
                 f"\t\t{f}({b}, \"{a} is {rng.choice(['busy', 'free', 'bad'])}\");",
                 f"\t\treturn -{rng.choice(['EINVAL', 'ENOMEM', 'EBUSY'])}; // {rng.choice(['no', 'out of'])} {a}",
                 "\t}",
                 f"\treturn {f}_{b}({a}, ({b}->{a} + 1));",
                 "}", ""]
        piece = "\n".join(lines) + "\n"
        out.append(piece)
        total += len(piece)
    return "".join(out)[:n_chars]


def tiny_run(cell: str = "lstm", steps: int = 300) -> Path:
    """A run directory holding a small trained model (2 layers of 24), trained once per process."""
    key = f"{cell}-{steps}"
    if key not in _CACHE:
        from unrolled.charlm.trainer import train

        root = Path(tempfile.mkdtemp(prefix="unrolled-web-test-"))
        corpus = root / "train.c"
        corpus.write_text(c_like(12_000, seed=1), encoding="utf-8")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared machine
        try:
            train(paths=[str(corpus)], cell=cell, hidden_size=24, num_layers=2, embedding_size=8,
                  max_steps=steps, batch_size=8, seq_len=48, lr=1e-2, warmup_steps=10, eval_every=steps,
                  progress=False, out=str(root / "run"), device="cpu", seed=7)
        finally:
            torch.set_num_threads(threads)
        _CACHE[key] = root / "run"
    return _CACHE[key]


@contextlib.contextmanager
def serve_process(*args: str, wait_s: float = 120):
    """Run `unrolled serve ARGS --port 0` in a real process; yield its base URL (no trailing /)."""
    proc = subprocess.Popen([sys.executable, "-m", "unrolled", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], wait_s)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("unrolled serve: http://127.0.0.1:"):
            proc.kill()
            raise AssertionError(f"unrolled serve did not start within {wait_s} s: {line!r} {proc.stderr.read()[-2000:]}")
        yield line.split()[2].rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
