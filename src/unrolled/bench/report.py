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


def _threads(row: dict) -> str:
    n = row.get("threads")
    return "" if n is None else f" at {n} thread{'s' if n != 1 else ''}"


def goals(result: dict) -> list[dict]:
    """The performance targets (docs/performance.md), each with the figure reached and whether it
    is met. A training target is also met where `auto` picks the fused path (torch's own code):
    there the default ties torch.nn and never runs the kernel that lost."""
    out = []
    for row in result.get("train", []):
        want = 1.3 if row["cell"] == "rnn" else 1.0
        got = row["speedup"]["unrolled"]
        where = f"{row['hidden']}x{row['layers']} b{row['batch']} t{row['seq']}{_threads(row)}"
        fused = row.get("auto") == "fast"
        out.append({"goal": f"train {row['cell']} {where}: unrolled >= {want}x torch", "reached": got, "target": want,
                    "auto": row.get("auto"), "kernel": row["speedup"].get("unrolled:kernel"),
                    "met": got >= want or fused})
        if row["cell"] == "lstm" and (row["hidden"], row["layers"], row["batch"], row["seq"]) == GOAL_SHAPE:
            frac = row["fraction_of_peak"]["unrolled"]
            out.append({"goal": f"train lstm 256x2 b64 t100{_threads(row)}: >= 75% of the matmul peak",
                        "reached": frac, "met": frac >= 0.75})
    for row in result.get("sample", []):
        if row["batch"] == 1:
            best = max(v for n, v in row["speedup"].items() if n.startswith("unrolled"))
            out.append({"goal": f"sampling at batch 1{_threads(row)}: >= 3x the naive nn.LSTM loop",
                        "reached": best, "met": best >= 3})
    return out


def _train_table(rows: list[dict], peaks: dict) -> list[str]:
    lines = ["| cell | threads | H x L, batch, seq | MFLOP/char | torch chars/s | unrolled chars/s | speedup | "
             "auto picks | fast | kernel | peak GFLOP/s | torch % of peak | unrolled % of peak |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        c, sp = r["chars_per_s"], r["speedup"]
        lines.append(f"| {r['cell']} | {r.get('threads', '')} | {r['hidden']}x{r['layers']}, {r['batch']}, {r['seq']} | "
                     f"{r['train_flops_per_char'] / 1e6:.2f} | {c['torch']:,.0f} | {c['unrolled']:,.0f} | "
                     f"{sp['unrolled']:.2f}x | {r.get('auto', '')} | {sp['unrolled:fast']:.2f}x | "
                     f"{sp['unrolled:kernel']:.2f}x | {max(r['peak_gflops'], peaks.get(r.get('threads'), 0)):.0f} | "
                     f"{100 * r['fraction_of_peak']['torch']:.0f}% | {100 * r['fraction_of_peak']['unrolled']:.0f}% |")
    return lines + [""]


def _sample_table(rows: list[dict]) -> list[str]:
    names = list(rows[0]["chars_per_s"])
    lines = ["| threads | sampling batch | " + " | ".join(f"{n} chars/s" for n in names) + " | best speedup |",
             "| ---: | ---: |" + " ---: |" * (len(names) + 1)]
    for r in rows:
        best = max(v for n, v in r["speedup"].items() if n != names[0])
        lines.append(f"| {r.get('threads', '')} | {r['batch']} | " + " | ".join(f"{r['chars_per_s'][n]:,.0f}" for n in names)
                     + f" | {best:.2f}x |")
    return lines + [""]


def _met(goal: dict) -> str:
    if not goal["met"]:
        return "no"
    return "yes" if goal["reached"] >= goal.get("target", 0) else "by auto (fused: torch's own code)"


def table(result: dict) -> str:
    """The result as Markdown tables, the form the README's performance section takes."""
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, threads {m['threads']}, torch {m['torch']}, "
             f"{m['device']}; load average {m.get('load_average_start')} -> {m.get('load_average_end')}"
             + (f"; kernels' step loops: {m['step_loops']}." if "step_loops" in m else "."), ""]
    lines += [f"Matrix-multiply peak measured in the run{_threads(p)}: {p['peak_gflops']} GFLOP/s "
              f"({p.get('peak_gflops_end')} at the end)." for p in result["matmul"]] + [""]
    for e in result.get("elementwise", []):
        lines += [f"Activations{_threads(e)}, ns per float32 element: torch.tanh {e['tanh_ns_per_element']}, "
                  f"torch.sigmoid {e['sigmoid_ns_per_element']}, tanh as 2 sigmoid(2x) - 1 "
                  f"{e['tanh_as_sigmoid_ns_per_element']}.", ""]
    if result.get("train"):
        lines += _train_table(result["train"], {p["threads"]: p["peak_gflops"] for p in result["matmul"]})
    if result.get("sample"):
        lines += _sample_table(result["sample"])
    if result.get("record"):
        lines += [f"Recording every state and gate (understand.record, 2-layer LSTM of 256){_threads(r)}: "
                  f"{r['chars_per_s']:,.0f} chars/s." for r in result["record"]] + [""]
    if result.get("memory"):
        lines += ["| seq | full BPTT peak MiB | truncated BPTT (window 100) peak MiB |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['seq']} | {r['full_mib']} | {r['truncated_mib']} |" for r in result["memory"]]
        lines.append("")
    if result.get("goals"):
        lines += ["| goal | reached | auto picks | met |", "| --- | ---: | --- | --- |"]
        lines += [f"| {g['goal']} | {g['reached']} | {g.get('auto') or ''} | {_met(g)} |" for g in result["goals"]]
    return "\n".join(lines)
