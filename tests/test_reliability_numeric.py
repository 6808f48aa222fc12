"""Numerical faults: a NaN or infinite loss or gradient is caught before the update is applied,
the run stops with one sentence (or skips the update with --nonfinite skip) and the last good
checkpoint stays good; a vanilla RNN with exploding gradients trains with clipping and diverges
without it."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from test_reliability_report import report
from test_train import tiny_text
from unrolled import store
from unrolled.charlm import tbptt
from unrolled.charlm.run import load
from unrolled.charlm.trainer import train
from unrolled import cli
from unrolled.errors import UserError

FAULTS = ("nan loss", "inf loss", "nan gradient", "inf gradient")
TINY = ["--hidden-size", "16", "--num-layers", "1", "--embedding-size", "8", "--batch-size", "2", "--seq-len", "8",
        "--max-steps", "6", "--eval-every", "3", "--warmup-steps", "2", "--device", "cpu", "--quiet"]


class _GradientOf(torch.autograd.Function):
    """Adds 0 to the loss, but sends `value` back as the gradient of `weight` (an injected fault)."""

    @staticmethod
    def forward(ctx, weight, value):
        ctx.shape, ctx.value = weight.shape, value
        return weight.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, ctx.value, dtype=grad.dtype), None


def inject(monkeypatch, fault: str, at: int, from_then_on: bool = False) -> None:
    """Make window number `at` (1-based; every window from it with `from_then_on`) carry `fault`."""
    real, calls = tbptt.tbptt_loss, [0]

    def poisoned(model, x, y, state, stride):
        loss, carry = real(model, x, y, state, stride)
        calls[0] += 1
        if calls[0] == at or (from_then_on and calls[0] > at):
            if fault == "nan loss":
                loss = loss * float("nan")
            elif fault == "inf loss":
                loss = loss + float("inf")  # the gradient stays finite: only the loss says so
            else:
                loss = loss + _GradientOf.apply(model.head.weight, float(fault.split()[0]))
        return loss, carry

    monkeypatch.setattr(tbptt, "tbptt_loss", poisoned)


def text_file(tmp_path):
    f = tmp_path / "text.txt"
    f.write_text(tiny_text(60, seed=4), encoding="utf-8")
    return str(f)


def all_finite(tensors: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


@pytest.mark.parametrize("fault", FAULTS)
def test_a_nonfinite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, fault):
    inject(monkeypatch, fault, at=5)  # checkpoints at step 3; step 5 goes wrong
    run = tmp_path / "run"
    assert cli.main(["train", text_file(tmp_path), "--out", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unrolled: error: ") and "Traceback" not in err
    assert "non-finite" in err and "at step 5" in err and f"{run / 'last'} (step 3)" in err and "--nonfinite skip" in err
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == 3
    for name in store.TENSOR_FILES:
        assert all_finite(load_file(str(run / "last" / name)))
    load(run)  # the kept checkpoint loads
    report("numerical", f"{fault} (--nonfinite stop)", 1, "stopped before the update, exit 2, last checkpoint kept")


@pytest.mark.parametrize("fault", FAULTS)
def test_skip_drops_the_update_and_the_run_goes_on(tmp_path, monkeypatch, capsys, fault):
    inject(monkeypatch, fault, at=4)
    run = tmp_path / "run"
    assert cli.main(["train", text_file(tmp_path), "--out", str(run), *TINY, "--nonfinite", "skip"]) == 0
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == 6 and state["loop"]["skipped"] == 1
    for name in store.TENSOR_FILES:
        assert all_finite(load_file(str(run / "last" / name)))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("skipped") == "nonfinite"] == [4]
    report("numerical", f"{fault} (--nonfinite skip)", 1, "update skipped and logged, run finished finite")


def test_skip_gives_up_after_ten_in_a_row(tmp_path, monkeypatch, capsys):
    inject(monkeypatch, "nan loss", at=4, from_then_on=True)
    run = tmp_path / "run"
    args = ["train", text_file(tmp_path), "--out", str(run), *TINY, "--nonfinite", "skip", "--max-steps", "30"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10 updates in a row" in err and "at step 13" in err
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 12  # the last periodic save
    assert all_finite(load_file(str(run / "last" / "model.safetensors")))
    report("numerical", "non-finite from some step on (--nonfinite skip)", 1, "stopped after 10 skips in a row, exit 2")


def test_a_stopped_run_resumes_with_skip(tmp_path, monkeypatch, capsys):
    """The message's advice works: resume from the kept checkpoint with --nonfinite skip."""
    inject(monkeypatch, "inf gradient", at=5)
    run = tmp_path / "run"
    assert cli.main(["train", text_file(tmp_path), "--out", str(run), *TINY]) == 2
    inject(monkeypatch, "inf gradient", at=2)  # the same window again: 2nd window after step 3
    assert cli.main(["train", "--resume", str(run), "--nonfinite", "skip", "--quiet"]) == 0
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == 6 and state["loop"]["skipped"] == 1 and all_finite(store.read(run, prefer="last").model)
    report("numerical", "stopped run resumed with --nonfinite skip", 1, "finished, one update skipped")


# --- exploding gradients: a vanilla RNN, plain SGD at lr 3, 80 steps ----------------------------------
EXPLODING = dict(cell="rnn", hidden_size=32, num_layers=1, embedding_size=0, batch_size=4, seq_len=32,
                 optimizer="sgd", lr=3.0, warmup_steps=0, schedule="constant", max_steps=80, eval_every=80,
                 log_every=1, progress=False, device="cpu", seed=0)


def exploding_run(tmp_path, name, **kw):
    f = tmp_path / "text.txt"
    if not f.exists():
        f.write_text(tiny_text(200, seed=3), encoding="utf-8")
    result = train(paths=[str(f)], out=str(tmp_path / name), **{**EXPLODING, **kw})
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r.get("split") == "train"]
    return result, train_rows


def test_exploding_gradients_diverge_without_clipping_and_train_with_it(tmp_path):
    try:
        unclipped, rows_u = exploding_run(tmp_path, "none", clip="none")
        final_u = unclipped.metrics["train_bpc"]
    except UserError:  # diverging all the way to NaN is diverging too
        rows_u, final_u = [json.loads(line) for line in (tmp_path / "none" / "metrics.jsonl").read_text().splitlines()], math.inf
    clipped, rows_c = exploding_run(tmp_path, "norm", clip="norm", clip_value=0.5)
    start = rows_c[0]["bpc"]  # the same first step in both runs: same seed, same first window
    assert rows_u[0]["bpc"] == start
    peak_u = max(r["grad_norm"] for r in rows_u if r.get("grad_norm") is not None)
    assert peak_u > 50  # the gradient explodes ...
    assert final_u > start  # ... and without clipping the run ends worse than it began
    assert clipped.metrics["train_bpc"] < 0.5 * start  # with clipping it learns
    report("numerical", "vanilla RNN, exploding gradients (SGD lr 3)", 2,
           f"no clipping: grad norm peaks at {peak_u:.0f}, train bpc {start:.2f} -> {final_u:.2f}; "
           f"clip norm 0.5: -> {clipped.metrics['train_bpc']:.2f}")
