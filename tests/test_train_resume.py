"""Exact resume: a run stopped and continued ends with the same weights, bit for bit on CPU, as
the same run never stopped (dropout on, so the RNG state must be restored too)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import B
from unrolled.charlm.trainer import train
from unrolled.errors import UserError
from test_train import tiny_text

SETTINGS = dict(hidden_size=12, num_layers=2, embedding_size=6, dropout=0.3, batch_size=B, seq_len=7,
                max_steps=11, eval_every=4, warmup_steps=3, device="cpu", progress=False)


def run(tmp_path, name, **kw):
    f = tmp_path / "text.txt"
    if not f.exists():
        f.write_text(tiny_text(80, seed=1), encoding="utf-8")
    return train(paths=[str(f)], out=str(tmp_path / name), **{**SETTINGS, **kw})


def tensors(run_dir, which="last", file="model.safetensors"):
    return load_file(str(run_dir / which / file))


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The run never stopped: the reference every resumed run must equal."""
    d = tmp_path_factory.mktemp("straight")
    return run(d, "straight")


@pytest.mark.parametrize("stop_at", [4, 7])  # on a checkpoint step, and between two
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, straight, stop_at):
    stopped = run(tmp_path, "stopped", callback=lambda info: info["step"] == stop_at)
    assert stopped.stopped == "interrupted" and stopped.step == stop_at
    resumed = train(resume=str(stopped.run_dir), progress=False)
    assert resumed.step == straight.step == 11
    for file in ("model.safetensors", "optimizer.safetensors", "state.safetensors"):
        assert_identical(tensors(straight.run_dir, file=file), tensors(stopped.run_dir, file=file))
    assert resumed.metrics["test_bpc"] == straight.metrics["test_bpc"]


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_resume_is_exact_through_our_sequence_kernel(tmp_path, cell):
    """Windows of 16 steps at batch 8: path "auto" runs the RNN and the GRU on our kernel (its
    step loops compiled where they load), and resume is still bit for bit."""
    import unrolled.kernels as kernels
    from unrolled.recurrent import LAYERS
    assert kernels.prefers_kernel(LAYERS[cell](6, 12), torch.zeros(8, 16, 6, requires_grad=True))
    kw = dict(cell=cell, batch_size=8, seq_len=16, max_steps=6)
    straight = run(tmp_path, "straight", **kw)
    stopped = run(tmp_path, "stopped", callback=lambda info: info["step"] == 3, **kw)
    train(resume=str(stopped.run_dir), progress=False)
    for file in ("model.safetensors", "optimizer.safetensors", "state.safetensors"):
        assert_identical(tensors(straight.run_dir, file=file), tensors(stopped.run_dir, file=file))


def test_resume_from_a_periodic_checkpoint_after_a_crash(tmp_path, straight):
    """A process killed without warning leaves the last periodic checkpoint (step 8 here)."""
    crashed = run(tmp_path, "crashed", callback=lambda info: info["step"] == 8)
    # What a crash just after step 8's checkpoint looks like: only last/ of step 8, no end-of-run files.
    state = json.loads((crashed.run_dir / "last" / "state.json").read_text())
    assert state["step"] == 8
    resumed = train(resume=str(crashed.run_dir), progress=False)
    assert_identical(tensors(straight.run_dir), tensors(resumed.run_dir))


def test_resume_may_extend_the_limits(tmp_path):
    first = run(tmp_path, "a", max_steps=5)
    longer = train(resume=str(first.run_dir), max_steps=9, progress=False)
    assert longer.step == 9
    cfg = json.loads((first.run_dir / "last" / "state.json").read_text())["config"]["train"]
    assert cfg["max_steps"] == 9 and cfg["decay_steps"] == 5  # the schedule's horizon stays put


def test_resume_refuses_a_changed_model_or_text(tmp_path):
    first = run(tmp_path, "a", max_steps=3)
    with pytest.raises(UserError, match="--hidden-size cannot change"):
        train(resume=str(first.run_dir), hidden_size=99, progress=False)
    (tmp_path / "text.txt").write_text(tiny_text(80, seed=2), encoding="utf-8")
    with pytest.raises(UserError, match="changed since it started"):
        train(resume=str(first.run_dir), progress=False)


def test_resume_of_a_missing_run(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        train(resume=str(tmp_path / "nothing"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a checkpoint"):
        train(resume=str(tmp_path / "empty"), progress=False)
    shutil.rmtree(tmp_path / "empty")
