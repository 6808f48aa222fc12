"""Training throughput: characters per second of one update against the plain torch.nn loop.

One update is forward, cross-entropy, backward, gradient-norm clipping and an Adam step of a
character model, for rnn, lstm and gru at the shapes (H, L, B, T) of `SHAPES`:

    torch            nn.Embedding -> nn.LSTM/GRU/RNN -> nn.Linear, the plain PyTorch loop
    unrolled         CharLM with its defaults and the Trainer's own loss, clipping and optimizer:
                     what `unrolled train` runs (the layer's path="auto")
    unrolled:fast    the same with the fused torch kernels forced (path="fast")
    unrolled:kernel  the same with our sequence kernels forced (path="kernel")

Every contender starts from the same weights and reads the same windows of text.
"""
from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from unrolled.bench.models import PlainCharModel, make_lm
from unrolled.bench.roofline import flops_per_char, peak_contenders
from unrolled.bench.settings import Settings
from unrolled.bench.timing import interleaved
from unrolled.charlm.optim import clip_gradients, make_optimizer
from unrolled.charlm.tbptt import tbptt_loss
from unrolled.charlm.config import TrainConfig
from unrolled.kernels import prefers_kernel

SHAPES = [(128, 1, 32, 100), (256, 2, 64, 100), (512, 3, 32, 50)]  # (H, L, B, T)
CELLS = ("rnn", "lstm", "gru")
CONTENDERS = ("torch", "unrolled", "unrolled:fast", "unrolled:kernel")


def train_contenders(cell: str, shape, vocab, tokens: torch.Tensor, device, bf16: bool = False):
    """-> ({name: a function doing one update on the next window}, the CharLM), all from the same
    weights and the same windows of text."""
    H, L, B, T = shape
    tcfg = TrainConfig()
    lm = make_lm(cell, H, L, vocab, device)
    E = lm.config.embedding_size or len(vocab)
    plain = PlainCharModel(cell, len(vocab), E, H, L).to(device)
    plain.load_state_dict(lm.state_dict())  # the same starting weights; names and shapes agree
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(tokens) - T - 1, (64, B), generator=gen)  # 64 windows, reused in turn
    windows = [torch.stack([tokens[s:s + T + 1] for s in row]).to(device) for row in starts]

    def window(counter):
        """The next window of one contender: every contender reads the same windows in turn."""
        counter[0] += 1
        w = windows[counter[0] % len(windows)]  # (B, T + 1)
        return w[:, :-1], w[:, 1:]

    def torch_step(model=plain, opt=torch.optim.Adam(plain.parameters(), lr=tcfg.lr), counter=[0]):  # noqa: B006
        x, y = window(counter)
        logits, _ = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip_value)
        opt.step()

    fns = {"torch": torch_step}
    for name, path in (("unrolled", None), ("unrolled:fast", "fast"), ("unrolled:kernel", "kernel")):
        model = lm if path is None else make_lm(cell, H, L, vocab, device)
        model.load_state_dict(lm.state_dict())
        if path is not None:
            model.rnn.path = path
        opt = make_optimizer(model.parameters(), tcfg)

        def unrolled_step(model=model, opt=opt, counter=[0]):  # noqa: B006 - this contender's own
            x, y = window(counter)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
                loss, _ = tbptt_loss(model, x, y, None, T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model.parameters(), tcfg)
            opt.step()
        fns[name] = unrolled_step
    return fns, lm


def _auto_picks(lm, B: int, T: int) -> str:
    """The path `auto` takes for lm's recurrent layer on a training window (B, T), at torch's thread count now."""
    x = torch.empty(B, T, lm.rnn.input_size, device=lm.rnn.weight_ih_l0.device)
    return "kernel" if prefers_kernel(lm.rnn, x) else "fast"


def bench_train(s: Settings, vocab, tokens, device, peaks: dict, shapes=SHAPES, cells=CELLS) -> list[dict]:
    """One row per shape, cell and thread count (the counts of one shape and cell measured back to
    back): chars/s, speedup over torch and fraction of the matmul peak of every contender, and
    the path `auto` took. peaks: {threads: the run's matmul peak at that count}."""
    rows = []
    for H, L, B, T in shapes:
        for cell in cells:
            fns, lm = train_contenders(cell, (H, L, B, T), vocab, tokens, device, s.bf16)
            fl = flops_per_char(cell, H, L, lm.config.embedding_size or len(vocab), len(vocab))
            k = max(1, round(B * T * fl["train"] / (2 * 1024 ** 3)))  # as many FLOPs as one update
            for threads in peaks:
                torch.set_num_threads(threads)
                # The roofline's peak is measured again inside this row, interleaved with the
                # contenders: a busy machine's peak moves, and the fraction must use the one they saw.
                timed = dict(fns, **peak_contenders(device, k))
                times = interleaved(timed, s.n_repeats, device, target_s=0.3 if s.quick else 0.6)
                row_peak = max(2 * 1024 ** 3 * k / statistics.median(times.pop(n)) / 1e9
                               for n in [n for n in times if n.startswith("matmul")])
                row = {"cell": cell, "hidden": H, "layers": L, "batch": B, "seq": T, "threads": threads,
                       "auto": _auto_picks(lm, B, T), "train_flops_per_char": fl["train"],
                       "peak_gflops": round(row_peak, 1), "chars_per_s": {}, "fraction_of_peak": {}}
                for n, ts in times.items():
                    cps = B * T / statistics.median(ts)
                    row["chars_per_s"][n] = round(cps, 1)
                    row["fraction_of_peak"][n] = round(cps * fl["train"] / (max(row_peak, peaks[threads]) * 1e9), 6)
                base = row["chars_per_s"]["torch"]
                row["speedup"] = {n: round(v / base, 3) for n, v in row["chars_per_s"].items()}
                rows.append(row)
                print(f"  train {cell} {(H, L, B, T)} {threads} threads (auto: {row['auto']}): " + ", ".join(
                    f"{n} {v:,.0f}" for n, v in row["chars_per_s"].items()), file=sys.stderr)
    return rows
