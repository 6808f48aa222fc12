"""The result of a run, read: the machine it ran on, the performance goals met, Markdown tables."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from unrolled.kernels import native

GOAL_SHAPE = (256, 2, 64, 100)  # the LSTM that must reach 75% of the matmul peak


def machine(device: torch.device, threads: int) -> dict:
    """The CPU, cores, threads, torch, Python and device of this run, and the load average at its start."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:  # our kernels' step loops: compiled, or why they run in Python
        info["step_loops"] = "compiled" if native.ops() is not None else native.reason()
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def goals(result: dict) -> list[dict]:
    """The performance targets (docs/performance.md), each with the figure reached and whether it is met."""
    out = []
    for row in result.get("train", []):
        want = 1.3 if row["cell"] == "rnn" else 1.0
        got = row["speedup"]["unrolled"]
        out.append({"goal": f"train {row['cell']} {row['hidden']}x{row['layers']} b{row['batch']} t{row['seq']}: "
                            f"unrolled >= {want}x torch", "reached": got, "met": got >= want})
        if row["cell"] == "lstm" and (row["hidden"], row["layers"], row["batch"], row["seq"]) == GOAL_SHAPE:
            frac = row["fraction_of_peak"]["unrolled"]
            out.append({"goal": "train lstm 256x2 b64 t100: >= 75% of the matmul peak", "reached": frac,
                        "met": frac >= 0.75})
    for row in result.get("sample", []):
        if row["batch"] == 1:
            best = max(v for n, v in row["speedup"].items() if n.startswith("unrolled"))
            out.append({"goal": "sampling at batch 1: >= 3x the naive nn.LSTM loop", "reached": best, "met": best >= 3})
    return out


def _train_table(rows: list[dict], peak: float) -> list[str]:
    lines = ["| cell | H x L, batch, seq | MFLOP/char | torch chars/s | unrolled chars/s | speedup | "
             "fast | kernel | peak GFLOP/s | torch % of peak | unrolled % of peak |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        c, sp = r["chars_per_s"], r["speedup"]
        lines.append(f"| {r['cell']} | {r['hidden']}x{r['layers']}, {r['batch']}, {r['seq']} | "
                     f"{r['train_flops_per_char'] / 1e6:.2f} | {c['torch']:,.0f} | {c['unrolled']:,.0f} | "
                     f"{sp['unrolled']:.2f}x | {sp['unrolled:fast']:.2f}x | {sp['unrolled:kernel']:.2f}x | "
                     f"{max(r['peak_gflops'], peak):.0f} | "
                     f"{100 * r['fraction_of_peak']['torch']:.0f}% | {100 * r['fraction_of_peak']['unrolled']:.0f}% |")
    return lines + [""]


def _sample_table(rows: list[dict]) -> list[str]:
    names = list(rows[0]["chars_per_s"])
    lines = ["| sampling batch | " + " | ".join(f"{n} chars/s" for n in names) + " | best speedup |",
             "| ---: |" + " ---: |" * (len(names) + 1)]
    for r in rows:
        best = max(v for n, v in r["speedup"].items() if n != names[0])
        lines.append(f"| {r['batch']} | " + " | ".join(f"{r['chars_per_s'][n]:,.0f}" for n in names)
                     + f" | {best:.2f}x |")
    return lines + [""]


def table(result: dict) -> str:
    """The result as Markdown tables, the form the README's performance section takes."""
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}, "
             f"{m['device']}; load average {m.get('load_average_start')} -> {m.get('load_average_end')}"
             + (f"; kernels' step loops: {m['step_loops']}." if "step_loops" in m else "."),
             f"Matrix-multiply peak measured in the run: {result['matmul']['peak_gflops']} GFLOP/s "
             f"({result['matmul'].get('peak_gflops_end')} at the end).", ""]
    if result.get("elementwise"):
        e = result["elementwise"]
        lines += [f"Activations, ns per float32 element: torch.tanh {e['tanh_ns_per_element']}, torch.sigmoid "
                  f"{e['sigmoid_ns_per_element']}, tanh as 2 sigmoid(2x) - 1 {e['tanh_as_sigmoid_ns_per_element']}.", ""]
    if result.get("train"):
        lines += _train_table(result["train"], result["matmul"]["peak_gflops"])
    if result.get("sample"):
        lines += _sample_table(result["sample"])
    if result.get("record"):
        lines += [f"Recording every state and gate (understand.record, 2-layer LSTM of 256): "
                  f"{result['record']['chars_per_s']:,.0f} chars/s.", ""]
    if result.get("memory"):
        lines += ["| seq | full BPTT peak MiB | truncated BPTT (window 100) peak MiB |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['seq']} | {r['full_mib']} | {r['truncated_mib']} |" for r in result["memory"]]
        lines.append("")
    if result.get("goals"):
        lines += ["| goal | reached | met |", "| --- | ---: | --- |"]
        lines += [f"| {g['goal']} | {g['reached']} | {'yes' if g['met'] else 'no'} |" for g in result["goals"]]
    return "\n".join(lines)
