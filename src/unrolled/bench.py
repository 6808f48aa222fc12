"""`unrolled bench`: speed and memory of unrolled against the loop a user writes with torch.nn.

What it measures, all in one run with the contenders interleaved (each repeat runs every
contender once, in a rotated order) and the median of the repeats reported:

1. training throughput, characters per second of one update (forward, cross-entropy, backward,
   gradient-norm clipping, an Adam step) of a character model, for rnn, lstm and gru at the
   shapes (H, L, B, T) of `SHAPES`:
     torch            nn.Embedding -> nn.LSTM/GRU/RNN -> nn.Linear, the plain PyTorch loop
     unrolled         CharLM with its defaults and train.py's own loss, clipping and optimizer:
                      what `unrolled train` runs (the layer's path="auto")
     unrolled:fast    the same with the fused torch kernels forced (path="fast")
     unrolled:kernel  the same with our sequence kernels forced (path="kernel")
2. the roofline: the matrix-multiply peak of this machine measured in the same run, the model's
   matrix FLOPs per character (forward 2 (D_l + H) G H per layer plus 2 H V for the head;
   training 3x that: the backward pass does two products per forward one), and the fraction of
   the peak each contender reaches;
3. sampling, characters per second at batch 1 and 64: a naive step loop over nn.LSTM, what
   `unrolled sample` runs (`sample.generate`), and the preallocated `kernels.StepSampler`;
   recording speed of `understand.record` (every state and gate, through the readable path);
4. memory: peak memory of one update with full BPTT (backward through the whole sequence)
   against truncated BPTT (windows of 100 steps, the state carried and detached), as the sequence
   grows; each point runs in a fresh process (peak resident memory on a CPU, peak allocated on
   CUDA).

On CUDA the same code runs unchanged (cuDNN on the fast path; `bf16=True` wraps the unrolled
contenders in bf16 autocast); it synchronises the device around every timed region.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SHAPES = [(128, 1, 32, 100), (256, 2, 64, 100), (512, 3, 32, 50)]  # (H, L, B, T)
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CONTENDERS = ("torch", "unrolled", "unrolled:fast", "unrolled:kernel")
GOAL_SHAPE = (256, 2, 64, 100)  # the LSTM that must reach 75% of the matmul peak


@dataclass
class Settings:
    quick: bool = False  # fewer repeats and steps, a shorter memory sweep
    threads: int | None = None  # torch threads; None = torch's default for this machine
    device: str = "cpu"
    bf16: bool = False  # CUDA only: bf16 autocast for the unrolled contenders
    repeats: int | None = None  # timed repeats per contender (median reported)
    parts: tuple[str, ...] = ("train", "sample", "record", "memory")

    @property
    def n_repeats(self) -> int:
        return self.repeats or (3 if self.quick else 5)


# --- timing ----------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, repeats: int, device: torch.device, target_s: float = 0.0) -> dict[str, list[float]]:
    """Run every fn once per repeat, the order rotated each repeat; -> seconds per call, per name.

    With target_s, each timed region calls its fn n times (the same n for all, from the slowest
    warm-up) so that a region lasts about target_s: short regions are at the mercy of a busy
    machine's scheduler.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    slowest = 0.0
    for n in names:  # warm-up: first-call allocations and caches stay out of the timings
        _sync(device)
        t0 = time.perf_counter()
        fns[n]()
        _sync(device)
        slowest = max(slowest, time.perf_counter() - t0)
    calls = max(1, min(20, int(target_s / max(slowest, 1e-9)))) if target_s else 1
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[n]()
            _sync(device)
            times[n].append((time.perf_counter() - t0) / calls)
    return times


def _peak_contenders(device: torch.device, k: int) -> dict:
    """k products of 1024 x 1024 matrices on each GEMM engine torch has here: torch.mm (MKL on a
    CPU, cuBLAS on CUDA) and, for float32 on a CPU, oneDNN with a packed weight, which the LSTM's
    fused cell and our kernels use and which is faster than MKL on some CPUs (AMD's)."""
    from unrolled.kernels import Product
    a = torch.randn(1024, 1024, device=device)
    fns = {"matmul:mm": lambda: [torch.mm(a, a) for _ in range(k)]}
    packed = Product(a, 1024)
    if packed.packed is not None:
        fns["matmul:onednn"] = lambda: [packed(a) for _ in range(k)]
    return fns


def matmul_peak(device: torch.device, repeats: int) -> dict:
    """The matrix-multiply peak of this machine, measured now: GFLOP/s of C = A B (float32) for a
    large square product and for the shapes the models do: one step (B x H)(H x 4H) and a whole
    sequence at once (B*T x H)(H x 4H). Each is the median of the repeats; the peak is the best
    of them, so the fraction of the peak a model reaches is never flattered."""
    out = {}
    for name, fn in _peak_contenders(device, 2).items():  # the square product on every engine
        out["square_1024_" + name.split(":")[1]] = 2 * 1024 ** 3 * 2 / statistics.median(
            interleaved({name: fn}, repeats, device)[name]) / 1e9
    for name, (m, k, n) in {"b64_h256_4h": (64, 256, 1024),
                            "b6400_h256_4h": (6400, 256, 1024)}.items():
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        reps = max(1, int(2e9 / (2 * m * k * n)))  # about 2 GFLOP per timed call
        def run(a=a, b=b, reps=reps):
            for _ in range(reps):
                torch.mm(a, b)
        secs = statistics.median(interleaved({name: run}, repeats, device)[name])
        out[name] = 2 * m * k * n * reps / secs / 1e9
    out["peak_gflops"] = max(out.values())
    return out


# --- the models --------------------------------------------------------------------------------------
def elementwise(device: torch.device, repeats: int) -> dict:
    """Nanoseconds per float32 element of the activations, over a (100, 64, 256) tensor: torch.tanh
    against torch.sigmoid and the kernels' tanh as 2 sigmoid(2x) - 1 (why they use it)."""
    from unrolled.kernels import tanh_into
    x = torch.randn(100, 64, 256, device=device)
    out = torch.empty_like(x)
    fns = {"tanh": lambda: torch.tanh(x, out=out), "sigmoid": lambda: torch.sigmoid(x, out=out),
           "tanh_as_sigmoid": lambda: tanh_into(x, out)}
    times = interleaved(fns, repeats, device)
    return {f"{n}_ns_per_element": round(statistics.median(t) / x.numel() * 1e9, 3) for n, t in times.items()}


def flops_per_char(cell: str, H: int, L: int, D: int, V: int) -> dict:
    """Matrix FLOPs per character: forward sum_l 2 (D_l + H) G H + 2 H V; training 3x forward."""
    G = GATES[cell]
    fwd = sum(2 * ((D if l == 0 else H) + H) * G * H for l in range(L)) + 2 * H * V
    return {"forward": fwd, "train": 3 * fwd}


class PlainCharModel(nn.Module):
    """The plain PyTorch character model: embedding, torch.nn recurrent layer, linear head."""

    def __init__(self, cell: str, V: int, E: int, H: int, L: int):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = TORCH_LAYERS[cell](E, H, L, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        h, state = self.rnn(self.embedding(idx), state)  # (B, T, H)
        return self.head(h), state  # (B, T, V)


def corpus_text(max_chars: int = 2_000_000) -> str:
    """Real text for the benchmark: the shared Shakespeare corpus beside the repository when it
    is there, else the project's default corpus (the Python standard library's source)."""
    here = Path(__file__).resolve()
    for root in here.parents:
        candidate = root.parent / "shared" / "data" / "shakespeare" / "works.txt"
        if (root / "pyproject.toml").exists() and candidate.exists():
            return candidate.read_text(encoding="utf-8")[:max_chars]
    from unrolled.text import default_corpus
    return default_corpus(max_chars)


def make_lm(cell: str, H: int, L: int, vocab, device):
    """The model `unrolled train` builds: CharLM with the config's defaults for everything else."""
    from unrolled.config import ModelConfig
    from unrolled.lm import CharLM
    return CharLM(vocab, ModelConfig(cell=cell, hidden_size=H, num_layers=L)).to(device)


def train_contenders(cell: str, shape, vocab, tokens: torch.Tensor, device, bf16: bool = False):
    """-> {name: a function doing one update on the next window}, all from the same weights and
    the same windows of text."""
    from unrolled.config import TrainConfig
    from unrolled.train import clip_gradients, make_optimizer, tbptt_loss
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


def bench_train(s: Settings, vocab, tokens, device, peak: float) -> list[dict]:
    rows = []
    shapes = SHAPES
    for H, L, B, T in shapes:
        for cell in CELLS:
            fns, lm = train_contenders(cell, (H, L, B, T), vocab, tokens, device, s.bf16)
            fl = flops_per_char(cell, H, L, lm.config.embedding_size or len(vocab), len(vocab))
            # The roofline's peak is measured again inside this row, interleaved with the
            # contenders: a busy machine's peak moves, and the fraction must use the one they saw.
            k = max(1, round(B * T * fl["train"] / (2 * 1024 ** 3)))  # as many FLOPs as one update
            fns.update(_peak_contenders(device, k))
            times = interleaved(fns, s.n_repeats, device, target_s=0.3 if s.quick else 0.6)
            row_peak = max(2 * 1024 ** 3 * k / statistics.median(times.pop(n)) / 1e9
                           for n in [n for n in times if n.startswith("matmul")])
            row = {"cell": cell, "hidden": H, "layers": L, "batch": B, "seq": T,
                   "train_flops_per_char": fl["train"], "peak_gflops": round(row_peak, 1),
                   "chars_per_s": {}, "fraction_of_peak": {}}
            for n, ts in times.items():
                cps = B * T / statistics.median(ts)
                row["chars_per_s"][n] = round(cps, 1)
                row["fraction_of_peak"][n] = round(cps * fl["train"] / (max(row_peak, peak) * 1e9), 4)
            base = row["chars_per_s"]["torch"]
            row["speedup"] = {n: round(v / base, 3) for n, v in row["chars_per_s"].items()}
            rows.append(row)
            print(f"  train {cell} {(H, L, B, T)}: " + ", ".join(
                f"{n} {v:,.0f}" for n, v in row["chars_per_s"].items()), file=sys.stderr)
    return rows


# --- sampling and recording -------------------------------------------------------------------------
def bench_sample(s: Settings, vocab, device) -> list[dict]:
    """Characters per second of generation at batch 1 and 64 (2-layer LSTM of 256, CharLM defaults)."""
    from unrolled.kernels import StepSampler
    from unrolled.sample import generate
    lm = make_lm("lstm", 256, 2, vocab, device).eval()
    plain = PlainCharModel("lstm", len(vocab), lm.config.embedding_size, 256, 2).to(device).eval()
    plain.load_state_dict(lm.state_dict())
    rows = []
    for batch in (1, 64):
        length = 100 if s.quick else 200
        gen = torch.Generator(device=device).manual_seed(0)
        stepper = StepSampler(lm, batch)

        @torch.no_grad()
        def naive():
            idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
            state, out = None, []
            for _ in range(length):
                h, state = plain.rnn(plain.embedding(idx), state)  # (N, 1, H)
                probs = F.softmax(plain.head(h[:, -1]), dim=-1)  # (N, V)
                idx = torch.multinomial(probs, 1, generator=gen)  # (N, 1)
                out.append(idx.view(-1).tolist())
            return out

        def library():
            return [nxt.tolist() for nxt in generate(lm, length, seed=0, num_samples=batch)]

        @torch.no_grad()
        def stepped():
            stepper.reset()
            idx = torch.zeros(batch, dtype=torch.long, device=device)
            out = []
            for _ in range(length):
                probs = torch.softmax(stepper.logits(idx), dim=-1)  # (N, V)
                idx = torch.multinomial(probs, 1, generator=gen).view(-1)  # (N,)
                out.append(idx.tolist())
            return out

        fns = {"torch naive loop": naive, "unrolled sample": library, "unrolled StepSampler": stepped}
        times = interleaved(fns, s.n_repeats, device)
        cps = {n: round(batch * length / statistics.median(ts), 1) for n, ts in times.items()}
        base = cps["torch naive loop"]
        rows.append({"batch": batch, "chars_per_s": cps, "speedup": {n: round(v / base, 3) for n, v in cps.items()}})
        print(f"  sample batch {batch}: " + ", ".join(f"{n} {v:,.0f}" for n, v in cps.items()), file=sys.stderr)
    return rows


def bench_record(s: Settings, vocab, text: str, device) -> dict:
    """Characters per second of `understand.record` (every state and gate of a 2-layer LSTM of 256)."""
    from unrolled.understand.record import record
    lm = make_lm("lstm", 256, 2, vocab, device).eval()
    piece = text[:5_000 if s.quick else 20_000]
    times = interleaved({"record": lambda: record(lm, piece)}, max(2, s.n_repeats - 2), device)["record"]
    cps = round(len(piece) / statistics.median(times), 1)
    print(f"  record: {cps:,.0f} chars/s", file=sys.stderr)
    return {"chars": len(piece), "chars_per_s": cps}


# --- memory ---------------------------------------------------------------------------------------
_MEMORY_CHILD = r"""
import json, resource, sys, torch
from unrolled.bench import memory_point
print(json.dumps(memory_point(*json.loads(sys.argv[1]))))
"""


def _resident_bytes() -> int:
    """The process's resident memory now (Linux /proc; else the high-water mark)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return _peak_resident_bytes()


def _reset_peak_resident() -> None:
    # Linux: writing 5 to clear_refs resets the high-water mark VmHWM, so the peak measured next
    # belongs to the update alone and not to importing torch.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_resident_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_point(mode: str, seq: int, window: int, threads: int, device_name: str) -> dict:
    """One update of a 2-layer LSTM of 256 (batch 32) over `seq` characters, in this process.

    full:      forward over all seq steps, backward through all of them
    truncated: windows of `window` steps, the state carried and detached between them, a
               backward per window (what `unrolled train` does)
    -> peak memory above the state before the update, in MiB.
    """
    from unrolled.recurrent import detach_state
    from unrolled.text import Vocabulary
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    vocab = Vocabulary([chr(c) for c in range(32, 127)])
    lm = make_lm("lstm", 256, 2, vocab, device)
    idx = torch.randint(0, len(vocab), (32, seq + 1), device=device)
    lm(idx[:, :8])[0].sum().backward()  # first-call allocations happen before the baseline
    lm.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _resident_bytes()
        _reset_peak_resident()
    k = seq if mode == "full" else window
    state = None
    for a in range(0, seq, k):
        logits, state = lm(idx[:, a:a + k], state)  # (B, k, V)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, a + 1:a + k + 1].reshape(-1)).backward()
        state = detach_state(state)  # the window edge: the next backward stops here
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _peak_resident_bytes() - before
    return {"mode": mode, "seq": seq, "window": window, "peak_mib": round(max(peak, 0) / 2**20, 1)}


def bench_memory(s: Settings, device, threads: int) -> list[dict]:
    seqs = (100, 400, 1600) if s.quick else (100, 200, 400, 800, 1600, 3200)
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH", "")]))
    for seq in seqs:
        row = {"seq": seq}
        for mode in ("full", "truncated"):
            arg = json.dumps([mode, seq, 100, threads, str(device)])
            done = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, arg], capture_output=True,
                                  text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"memory point {mode} seq={seq} failed: {done.stderr.strip()[-500:]}")
            row[mode + "_mib"] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]
        rows.append(row)
        print(f"  memory seq {seq}: full {row['full_mib']} MiB, truncated {row['truncated_mib']} MiB",
              file=sys.stderr)
    return rows


# --- the whole run ------------------------------------------------------------------------------------
def machine(device: torch.device, threads: int) -> dict:
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
    else:
        from unrolled import native  # our kernels' step loops: compiled, or why they run in Python
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


def run(s: Settings) -> dict:
    device = torch.device(s.device)
    if s.threads:
        torch.set_num_threads(s.threads)
    threads = torch.get_num_threads()
    result: dict = {"machine": machine(device, threads), "settings": {"quick": s.quick, "repeats": s.n_repeats,
                                                                      "bf16": s.bf16}}
    from unrolled.text import Vocabulary
    text = corpus_text()
    vocab = Vocabulary.from_text(text)
    tokens = torch.tensor(vocab.encode(text[:1_000_000]), dtype=torch.long)
    print(f"unrolled bench on {result['machine']['cpu']} ({device}, {threads} threads)", file=sys.stderr)
    peak = matmul_peak(device, s.n_repeats)
    result["matmul"] = {k: round(v, 1) for k, v in peak.items()}
    print(f"  matmul peak {peak['peak_gflops']:.1f} GFLOP/s", file=sys.stderr)
    result["elementwise"] = elementwise(device, s.n_repeats)
    print(f"  elementwise {result['elementwise']}", file=sys.stderr)
    if "train" in s.parts:
        result["train"] = bench_train(s, vocab, tokens, device, peak["peak_gflops"])
    if "sample" in s.parts:
        result["sample"] = bench_sample(s, vocab, device)
    if "record" in s.parts:
        result["record"] = bench_record(s, vocab, text, device)
    if "memory" in s.parts:
        result["memory"] = bench_memory(s, device, threads)
    peak_end = matmul_peak(device, s.n_repeats)["peak_gflops"]  # the machine may have changed meanwhile
    result["matmul"]["peak_gflops_end"] = round(peak_end, 1)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["goals"] = goals(result)
    return result


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
        lines += ["| cell | H x L, batch, seq | MFLOP/char | torch chars/s | unrolled chars/s | speedup | "
                  "fast | kernel | peak GFLOP/s | torch % of peak | unrolled % of peak |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["train"]:
            c, sp = r["chars_per_s"], r["speedup"]
            lines.append(f"| {r['cell']} | {r['hidden']}x{r['layers']}, {r['batch']}, {r['seq']} | "
                         f"{r['train_flops_per_char'] / 1e6:.2f} | {c['torch']:,.0f} | {c['unrolled']:,.0f} | "
                         f"{sp['unrolled']:.2f}x | {sp['unrolled:fast']:.2f}x | {sp['unrolled:kernel']:.2f}x | "
                         f"{max(r['peak_gflops'], result['matmul']['peak_gflops']):.0f} | "
                         f"{100 * r['fraction_of_peak']['torch']:.0f}% | {100 * r['fraction_of_peak']['unrolled']:.0f}% |")
        lines.append("")
    if result.get("sample"):
        names = list(result["sample"][0]["chars_per_s"])
        lines += ["| sampling batch | " + " | ".join(f"{n} chars/s" for n in names) + " | best speedup |",
                  "| ---: |" + " ---: |" * (len(names) + 1)]
        for r in result["sample"]:
            best = max(v for n, v in r["speedup"].items() if n != names[0])
            lines.append(f"| {r['batch']} | " + " | ".join(f"{r['chars_per_s'][n]:,.0f}" for n in names)
                         + f" | {best:.2f}x |")
        lines.append("")
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


def main(quick: bool = False, as_json: bool = False, threads: int | None = None, device: str = "auto",
         bf16: bool = False, repeats: int | None = None, parts=None) -> int:
    from unrolled.errors import UserError
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device torch knows; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but this torch sees no CUDA device; use --device cpu")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats must be a positive integer, got {repeats}")
    if bf16 and not device.startswith("cuda"):
        raise UserError("--bf16 (autocast) is for CUDA devices only; drop it or use --device cuda")
    s = Settings(quick=quick, threads=threads, device=device, bf16=bf16, repeats=repeats,
                 parts=tuple(parts) if parts else Settings.parts)
    result = run(s)
    print(json.dumps(result, indent=1) if as_json else table(result))
    return 0
