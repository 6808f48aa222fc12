"""The memory claim of truncated BPTT, measured.

Truncated BPTT keeps the graph of one window only: its memory should not grow with the length of
the corpus, and should grow with the window. Full BPTT keeps the graph of the whole sequence: its
memory grows with the sequence length.

Each configuration runs in a fresh process (so peak RSS is its own) a whole pass of training
updates with `unrolled.charlm.tbptt.tbptt_loss` over B = 16 streams (one LSTM layer of H = 128) of a synthetic corpus (for truncated
BPTT: every window of the pass, the state carried and detached at each edge; for full BPTT: one
update over the whole streams). Two numbers per row:

* saved for backward: the largest total size of the tensors autograd keeps for one backward pass
  (counted exactly with `torch.autograd.graph.saved_tensors_hooks`), i.e. the graph's memory;
* peak RSS: the process's peak resident memory (`ru_maxrss`) minus its resident memory just before
  the first update, i.e. what the machine had to provide.

    python benchmarks/tbptt_memory.py              # JSON on stdout, a Markdown table on stderr
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys

MiB = 2**20
B, H, L, E, V = 16, 128, 1, 32, 96

# (mode, corpus characters, window): corpus length varies at a fixed window, then the window
# varies at a fixed corpus, then full BPTT over growing sequences.
CONFIGS = ([("truncated", n, 100) for n in (20_000, 80_000, 320_000)]
           + [("truncated", 80_000, t) for t in (25, 50, 200, 400)]
           + [("full", n, None) for n in (2_000, 4_000, 8_000, 16_000)])


def measure(mode: str, chars: int, window: int | None) -> dict:
    """Runs in the child process."""
    import numpy as np
    import torch

    from unrolled.charlm.config import ModelConfig
    from unrolled.charlm.model import CharLM
    from unrolled.charlm.text import TokenStreams, Vocabulary
    from unrolled.charlm.tbptt import tbptt_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = Vocabulary([chr(32 + i) for i in range(V)])
    model = CharLM(vocab, ModelConfig(hidden_size=H, num_layers=L, embedding_size=E))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    tokens = np.random.default_rng(0).integers(0, V, size=chars).astype(np.uint8)
    row = (chars - 1) // B
    streams = TokenStreams(tokens, B, row if mode == "full" else window)

    saved = {"now": 0, "peak": 0}

    def pack(t):
        saved["now"] += t.untyped_storage().nbytes()
        return t

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    base = None
    carry, updates = None, 0
    for w in streams:
        saved["now"] = 0
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if base is None:
                base = rss_mib()
            loss, carry = tbptt_loss(model, w.x, w.y, carry, streams.stride)
        saved["peak"] = max(saved["peak"], saved["now"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates += 1
    return {"mode": mode, "corpus_chars": chars, "window": streams.seq_len, "updates": updates,
            "saved_for_backward_mib": saved["peak"] / MiB, "peak_rss_growth_mib": rss_mib() - base}


def main() -> list[dict]:
    rows = []
    for mode, chars, window in CONFIGS:
        code = (f"import json, sys; sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r}); "
                f"import tbptt_memory as m; print(json.dumps(m.measure({mode!r}, {chars}, {window!r})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{mode:9s} corpus {chars:>8,} window {row['window']:>6,}: saved {row['saved_for_backward_mib']:8.1f} MiB, "
              f"RSS +{row['peak_rss_growth_mib']:7.1f} MiB", file=sys.stderr, flush=True)
    print(json.dumps({"B": B, "H": H, "L": L, "E": E, "V": V, "rows": rows}, indent=1))
    print("\n| BPTT | corpus chars | window (steps) | updates | saved for backward (MiB) | peak RSS growth (MiB) |",
          file=sys.stderr)
    print("| --- | ---: | ---: | ---: | ---: | ---: |", file=sys.stderr)
    for r in rows:
        print(f"| {r['mode']} | {r['corpus_chars']:,} | {r['window']:,} | {r['updates']} | "
              f"{r['saved_for_backward_mib']:.1f} | {r['peak_rss_growth_mib']:.1f} |", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
