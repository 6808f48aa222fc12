"""Does torch.compile pay for generation? One sampling step of a 2-layer LSTM of 256 at batch 1,
three ways, interleaved, median of repeats:

    eager     the step written plainly (embedding, two LSTM cells, head)
    compiled  the same function through torch.compile (inductor)
    stepper   CharLM.stepper (kernels.RecurrentStep: preallocated state, folded embedding)

    python benchmarks/compile_sampling.py [--threads 1] [--steps 200] [--repeats 5]

Prints the compile time and steps per second of each as JSON. docs/performance.md has a result.
"""
import argparse
import json
import statistics
import time

import torch

from unrolled.bench import make_lm
from unrolled.charlm.text import Vocabulary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab = Vocabulary([chr(c) for c in range(32, 127)])
    lm = make_lm("lstm", 256, 2, vocab, torch.device("cpu")).eval()
    stepper = lm.stepper(1)

    def step(idx, h, c):
        x = lm.embedding(idx)  # (1, E)
        hs, cs = [], []
        for k in range(lm.rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = lm.rnn.layer_weights(k)
            i, f, g, o = (x @ w_ih.t() + b_ih + h[k] @ w_hh.t() + b_hh).chunk(4, 1)  # each (1, H)
            ck = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
            hk = torch.sigmoid(o) * torch.tanh(ck)
            hs.append(hk)
            cs.append(ck)
            x = hk
        return lm.head(x), torch.stack(hs), torch.stack(cs)

    idx = torch.zeros(1, dtype=torch.long)
    h = torch.zeros(lm.rnn.num_layers, 1, 256)
    c = torch.zeros_like(h)
    with torch.no_grad():
        t0 = time.perf_counter()
        compiled = torch.compile(step, dynamic=False)
        compiled(idx, h, c)
        compile_s = time.perf_counter() - t0

        def loop(fn):
            def run():
                hh, cc = h, c
                for _ in range(args.steps):
                    _, hh, cc = fn(idx, hh, cc)
            return run

        def run_stepper():
            for _ in range(args.steps):
                stepper.logits(idx)

        fns = {"eager": loop(step), "compiled": loop(compiled), "stepper": run_stepper}
        times = {n: [] for n in fns}
        for fn in fns.values():
            fn()
        for r in range(args.repeats):
            for n, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t)
    print(json.dumps({"compile_seconds": round(compile_s, 1), "threads": args.threads,
                      "steps_per_s": {n: round(args.steps / statistics.median(t)) for n, t in times.items()}}))


if __name__ == "__main__":
    main()
