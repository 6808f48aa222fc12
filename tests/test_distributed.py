"""Distributed training under a real `torchrun` with two gloo processes on the CPU."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import unrolled

TINY = ["--cell", "lstm", "--hidden-size", "8", "--num-layers", "2", "--embedding-size", "4",
        "--seq-len", "6", "--lr", "0.01", "--schedule", "constant", "--warmup-steps", "0",
        "--eval-every", "1000", "--seed", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(Path(unrolled.recurrent.__file__).read_text(encoding="utf-8")[:6000], encoding="utf-8")
    return path


def run(args, procs=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1:
        cmd = [sys.executable, "-m", "unrolled", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
               f"--nproc_per_node={procs}", "-m", "unrolled", "train", *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    out, err = finish(p)
    assert p.returncode == 0, out[-2000:] + err[-4000:]
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def finish(p, timeout=180):
    """Wait for a launcher; on timeout kill its whole process group (torchrun's workers too)."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(p.args)}\n{out[-2000:]}{err[-4000:]}")


def weights(run_dir):
    return load_file(str(Path(run_dir) / "last" / "model.safetensors"))


def test_ddp_steps_equal_one_process_over_the_union_of_batches(corpus, tmp_path):
    """Two ranks with batch 2 each take the same updates as one process with batch 4."""
    ddp = run([str(corpus), *TINY, "--batch-size", "2", "--max-steps", "3", "--out", str(tmp_path / "ddp")], procs=2)
    run([str(corpus), *TINY, "--batch-size", "4", "--max-steps", "3", "--out", str(tmp_path / "one")])
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert json.loads((tmp_path / "ddp" / "last" / "state.json").read_text())["step"] == 3
    assert "effective batch 4" in ddp.stdout
    # Only rank 0 writes (one test row), and the checkpoint carries the whole state: 4 streams.
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "test" for r in rows) == 1
    carry = load_file(str(tmp_path / "ddp" / "last" / "state.safetensors"))
    assert carry["carry.h"].shape == (2, 4, 8) and carry["carry.c"].shape == (2, 4, 8)
    torch.testing.assert_close(carry["carry.h"], load_file(str(tmp_path / "one" / "last" / "state.safetensors"))
                               ["carry.h"], rtol=1e-5, atol=1e-6)


def test_ddp_resume_equals_an_uninterrupted_ddp_run(corpus, tmp_path):
    run([str(corpus), *TINY, "--batch-size", "2", "--max-steps", "4", "--out", str(tmp_path / "straight")], procs=2)
    run([str(corpus), *TINY, "--batch-size", "2", "--max-steps", "2", "--out", str(tmp_path / "split")], procs=2)
    run(["--resume", str(tmp_path / "split"), "--max-steps", "4"], procs=2)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7, msg=k)


def test_two_nodes_rendezvous_over_loopback(corpus, tmp_path):
    """Multi-node as a user runs it: two torchrun launchers (one per 'node'), one process each,
    meeting at a c10d rendezvous endpoint; equal to one process over the union of the batches."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(corpus), *TINY, "--batch-size", "2", "--max-steps", "2", "--out", str(tmp_path / "nodes")]
    launchers = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={i}",
         "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=unrolled-test",
         # both "nodes" share this host: say which one hosts the rendezvous store, rather than
         # letting both try to bind the port and one fall back
         f"--rdzv_conf=is_host={int(i == 0)}",
         "-m", "unrolled", "train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True) for i in range(2)]
    for p in launchers:
        out, err = finish(p)
        assert p.returncode == 0, out[-2000:] + err[-4000:]
    run([str(corpus), *TINY, "--batch-size", "4", "--max-steps", "2", "--out", str(tmp_path / "one")])
    a, b = weights(tmp_path / "nodes"), weights(tmp_path / "one")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_ddp_through_our_compiled_kernel_equals_one_process(corpus, tmp_path):
    """The RNN over windows of 16 steps runs on our sequence kernel (path "auto", the compiled
    step loops); under DDP its gradients are averaged like torch's own: 2 ranks x batch 2 take
    the updates of 1 process x batch 4."""
    from unrolled.kernels import native
    if native.ops() is None:
        pytest.skip(f"the compiled step loops are not here: {native.reason()}")
    rnn = [a if a != "lstm" else "rnn" for a in TINY]
    rnn[rnn.index("--seq-len") + 1] = "16"
    run([str(corpus), *rnn, "--batch-size", "2", "--max-steps", "3", "--out", str(tmp_path / "ddp")], procs=2)
    run([str(corpus), *rnn, "--batch-size", "4", "--max-steps", "3", "--out", str(tmp_path / "one")])
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the layer took our kernel there (what auto decides for this layer and window)
    layer = unrolled.RNN(4, 8, 2)
    assert layer._auto_path(torch.zeros(2, 16, 4), None) == "kernel"
