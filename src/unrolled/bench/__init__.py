"""`unrolled bench`: speed and memory of unrolled against the loop a user writes with torch.nn.

What it measures, all in one run with the contenders interleaved (each repeat runs every
contender once, in a rotated order) and the median of the repeats reported:

1. training throughput (training.py): characters per second of one update of a character model
   for rnn, lstm and gru at three shapes, torch.nn against `unrolled train`'s own update on each
   of its paths;
2. the roofline (roofline.py): the matrix-multiply peak of this machine measured in the same run,
   the model's matrix FLOPs per character, and the fraction of the peak each contender reaches;
3. sampling and recording speed (sampling.py): a naive nn.LSTM step loop, `unrolled sample` and
   the model's own stepper (`CharLM.stepper`) at batch 1 and 64; `understand.record` over every
   state and gate;
4. memory (memory.py): peak memory of full against truncated BPTT as the sequence grows, each
   point in a fresh process.

report.py reads the result: the machine, the goals of docs/performance.md, Markdown tables.
On CUDA the same code runs unchanged (cuDNN on the fast path; `bf16=True` wraps the unrolled
contenders in bf16 autocast); it synchronises the device around every timed region.

    result = bench.run(bench.settings(quick=True, parts=["sample"]))
    print(bench.table(result))
"""
from __future__ import annotations

import os
import sys

import torch

from unrolled.bench.memory import bench_memory, memory_point
from unrolled.bench.models import PlainCharModel, corpus_text, make_lm
from unrolled.bench.report import goals, machine, table
from unrolled.bench.roofline import elementwise, flops_per_char, matmul_peak
from unrolled.bench.sampling import bench_record, bench_sample
from unrolled.bench.settings import PARTS, Settings, settings
from unrolled.bench.timing import interleaved
from unrolled.bench.training import CELLS, CONTENDERS, SHAPES, bench_train, train_contenders
from unrolled.charlm.text import Vocabulary

__all__ = ["run", "settings", "Settings", "PARTS", "table", "goals", "machine", "flops_per_char", "matmul_peak",
           "elementwise", "interleaved", "make_lm", "PlainCharModel", "corpus_text", "memory_point",
           "train_contenders", "SHAPES", "CELLS", "CONTENDERS"]


def run(s: Settings) -> dict:
    """Every part of `s.parts` at every thread count of `s.thread_counts`, in this process, on one
    vocabulary and text, between two measurements of the matmul peak at each count -> the result
    (what --json prints). Every row carries its thread count; the training rows measure the counts
    of one shape and cell back to back. Progress lines go to stderr."""
    device = torch.device(s.device)
    before = torch.get_num_threads()
    counts = s.thread_counts
    result: dict = {"machine": machine(device, list(counts)),
                    "settings": {"quick": s.quick, "repeats": s.n_repeats, "bf16": s.bf16}}
    # corpus_text, SHAPES and CELLS are read from this module, so a test can make them small
    text = corpus_text()
    vocab = Vocabulary.from_text(text)
    tokens = torch.tensor(vocab.encode(text[:1_000_000]), dtype=torch.long)
    print(f"unrolled bench on {result['machine']['cpu']} ({device}, threads {counts})", file=sys.stderr)
    try:
        peaks = {}
        result["matmul"], result["elementwise"] = [], []
        for n in counts:
            torch.set_num_threads(n)
            peak = matmul_peak(device, s.n_repeats)
            peaks[n] = peak["peak_gflops"]
            result["matmul"].append({"threads": n, **{k: round(v, 1) for k, v in peak.items()}})
            result["elementwise"].append({"threads": n, **elementwise(device, s.n_repeats)})
            print(f"  {n} threads: matmul peak {peak['peak_gflops']:.1f} GFLOP/s, "
                  f"elementwise {result['elementwise'][-1]}", file=sys.stderr)
        if "train" in s.parts:
            result["train"] = bench_train(s, vocab, tokens, device, peaks, shapes=SHAPES, cells=CELLS)
        for part, bench_part in (("sample", bench_sample), ("record", bench_record)):
            if part in s.parts:
                result[part] = []
                for n in counts:
                    torch.set_num_threads(n)
                    got = bench_part(s, vocab, device) if part == "sample" else [bench_part(s, vocab, text, device)]
                    result[part] += [{"threads": n, **row} for row in got]
        if "memory" in s.parts:  # peak memory does not depend on the thread count: the largest
            result["memory"] = bench_memory(s, device, max(counts))
        for row in result["matmul"]:  # the machine may have changed meanwhile
            torch.set_num_threads(row["threads"])
            row["peak_gflops_end"] = round(matmul_peak(device, s.n_repeats)["peak_gflops"], 1)
    finally:
        torch.set_num_threads(before)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["goals"] = goals(result)
    return result
