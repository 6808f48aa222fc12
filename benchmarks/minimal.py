"""Training speed of the scan-trained cells beside the LSTM: characters per second of one update.

One update is what `unrolled train` runs: CharLM's forward over a window, the truncated-BPTT
loss, backward, gradient-norm clipping and an Adam step (`unrolled.bench.training`'s
"unrolled" contender), for every cell at every shape (H, L, B, T). The contenders of one shape
start from their own default initialisation, read the same windows of text and are interleaved
in one run (`unrolled.bench.timing.interleaved`: the order rotated each repeat), so a busy
machine slows them alike.

    lstm           unrolled.LSTM, path auto (torch's fused kernel or ours, kernels.KERNEL_WINS)
    mingru         unrolled.MinGRU, path auto (the loop on the CPU, the scan elsewhere)
    minlstm        unrolled.MinLSTM, path auto
    mingru:scan    unrolled.MinGRU on the log-space scan: why auto takes the loop on the CPU

    python benchmarks/minimal.py                          # the default shapes, JSON on stdout
    python benchmarks/minimal.py --shapes 256x2x64x100 --repeats 3 --target-s 0.3

Shapes are HxLxBxT. Prints one JSON object and a Markdown table (on stderr) with each cell's
chars/s and its speed relative to the LSTM at the same shape.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys

import torch

from unrolled.bench.models import corpus_text, make_lm
from unrolled.bench.timing import interleaved
from unrolled.charlm.config import TrainConfig
from unrolled.charlm.optim import clip_gradients, make_optimizer
from unrolled.charlm.tbptt import tbptt_loss
from unrolled.charlm.text import Vocabulary

SHAPES = "256x2x64x100,512x2x32x100,256x2x16x400,1024x2x16x100"
CONTENDERS = "lstm,mingru,minlstm,mingru:scan"


def step_fn(name: str, shape, vocab, windows, device):
    """A function doing one training update of contender `name` ("cell" or "cell:path") on the next window."""
    cell, _, path = name.partition(":")
    H, L, B, T = shape
    torch.manual_seed(0)
    model = make_lm(cell, H, L, vocab, device)
    if path:
        model.rnn.path = path
    cfg = TrainConfig()
    opt = make_optimizer(model.parameters(), cfg)
    counter = [0]

    def step():
        counter[0] += 1
        w = windows[counter[0] % len(windows)]  # (B, T + 1)
        loss, _ = tbptt_loss(model, w[:, :-1], w[:, 1:], None, T)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), cfg)
        opt.step()
    return step


def bench_shape(shape, names, vocab, tokens, device, repeats: int, target_s: float) -> dict:
    H, L, B, T = shape
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(tokens) - T - 1, (16, B), generator=gen)  # 16 windows, reused in turn
    windows = [torch.stack([tokens[s:s + T + 1] for s in row]).to(device) for row in starts]
    fns = {n: step_fn(n, shape, vocab, windows, device) for n in names}
    times = interleaved(fns, repeats, device, target_s=target_s)
    cps = {n: B * T / statistics.median(ts) for n, ts in times.items()}
    base = cps.get("lstm")
    row = {"hidden": H, "layers": L, "batch": B, "seq": T,
           "chars_per_s": {n: round(v, 1) for n, v in cps.items()},
           "vs_lstm": {n: round(v / base, 3) for n, v in cps.items()} if base else {}}
    print(f"  {H}x{L}, batch {B}, seq {T}: " + ", ".join(f"{n} {v:,.0f}" for n, v in cps.items()),
          file=sys.stderr, flush=True)
    return row


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 4 or min(s) < 1 for s in shapes):
        raise SystemExit(f"--shapes {text!r}: give HxLxBxT shapes separated by commas, e.g. 256x2x64x100")
    return shapes


def table(result: dict) -> str:
    """The Markdown table of a result: each contender's chars/s and its speed against the LSTM."""
    names = list(result["rows"][0]["chars_per_s"]) if result["rows"] else []
    lines = ["| H x L, batch, seq | " + " | ".join(f"{n} chars/s" for n in names) + " | "
             + " | ".join(f"{n} / lstm" for n in names if n != "lstm") + " |",
             "| --- |" + " ---: |" * (2 * len(names) - ("lstm" in names))]
    for r in result["rows"]:
        cells = [f"{r['chars_per_s'][n]:,.0f}" for n in names]
        ratios = [f"{r['vs_lstm'][n]:.2f}x" if r["vs_lstm"] else "" for n in names if n != "lstm"]
        lines.append(f"| {r['hidden']}x{r['layers']}, {r['batch']}, {r['seq']} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=SHAPES, help=f"HxLxBxT, comma-separated (default {SHAPES})")
    ap.add_argument("--contenders", default=CONTENDERS, help=f"cell or cell:path, comma-separated (default {CONTENDERS})")
    ap.add_argument("--repeats", type=int, default=5, help="timed regions per contender (default 5)")
    ap.add_argument("--target-s", type=float, default=1.0, help="seconds a timed region lasts at least (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    shapes, names = parse_shapes(args.shapes), [n for n in args.contenders.split(",") if n]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    text = corpus_text(1_000_000)
    vocab = Vocabulary.from_text(text)
    tokens = torch.tensor(vocab.encode(text), dtype=torch.long)
    result = {"machine": {"threads": torch.get_num_threads(), "platform": platform.platform(),
                          "processor": platform.processor(), "torch": torch.__version__, "device": str(device)},
              "settings": {"repeats": args.repeats, "target_s": args.target_s}, "rows": []}
    print(f"benchmarks/minimal.py: {len(shapes)} shapes x {names}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    for shape in shapes:
        result["rows"].append(bench_shape(shape, names, vocab, tokens, device, args.repeats, args.target_s))
    print(json.dumps(result, indent=1))
    print("\n" + table(result), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
