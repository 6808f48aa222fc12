"""SIGKILL at many points of a real `unrolled train` process, then resume.

A harness process imports torch once and forks one training process per kill point (each runs
`unrolled.cli.main(["train", ...])`, the code of the `unrolled` command). Most kill themselves
with a real SIGKILL at an exact point: between two windows, before or halfway through a
checkpoint's tensor file, halfway through its state.json, before either of the two renames that
replace a checkpoint, before the old copy is deleted. Two more are killed from outside, a
fixed delay after their first checkpoint appears. For every one: the run's last checkpoint loads, and `unrolled train --resume` ends with
weights, optimizer and carried state bit for bit equal to the same run never killed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_reliability_report import report
from test_train import tiny_text
from unrolled import cli, store
from unrolled.charlm.run import load

# eval_every 2: a checkpoint pair (last, and best when validation improved) every second step.
FLAGS = ["--hidden-size", "12", "--num-layers", "2", "--embedding-size", "6", "--dropout", "0.3",
         "--batch-size", "2", "--seq-len", "7", "--max-steps", "10", "--eval-every", "2", "--warmup-steps", "3",
         "--device", "cpu", "--quiet"]

# (name, point, n): die the n-th time the process reaches `point`. Each save writes three tensor
# files then state.json, and replacing a checkpoint is two renames (old aside, new in); the first
# two saves (last and best at step 2) have no old copy, so renames 3 and 4 are the step-4 `last`.
POINTS = [
    ("before the first checkpoint", "window", 2),
    ("between two checkpoints", "window", 5),
    ("before a tensor file of best/", "before-file", 5),
    ("halfway through a tensor file", "inside-file", 8),
    ("halfway through state.json", "inside-state-json", 3),
    ("before moving the old last/ aside", "before-rename", 3),
    ("between the two renames", "before-rename", 4),
    ("before deleting the old copy", "before-cleanup", 1),
    ("halfway through a later tensor file", "inside-file", 14),
    ("from outside, 0.01 s after its first checkpoint", "external", 0.01),
    ("from outside, 0.1 s after its first checkpoint", "external", 0.1),
]

HARNESS = r'''
import json, os, signal, sys, time
import torch
torch.set_num_threads(1)
from safetensors.torch import save as save_bytes
from unrolled import store
from unrolled.charlm import tbptt
from unrolled.cli import main
text, root, points, flags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])


def arm(point, n):
    """Make this process SIGKILL itself the n-th time it reaches `point`."""
    seen = {}

    def reached(name):
        seen[name] = seen.get(name, 0) + 1
        return name == point and seen[name] == n

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_file, real_dump, real_replace, real_rmtree = store.save_file, store.json.dump, os.replace, store.shutil.rmtree
    real_loss = tbptt.tbptt_loss

    def save_file(tensors, filename):
        if reached("inside-file"):
            blob = save_bytes(tensors)
            with open(filename, "wb") as f:
                f.write(blob[: len(blob) // 2])
            die()
        if reached("before-file"):
            die()
        return real_file(tensors, filename)

    def dump(obj, f, **kw):
        if reached("inside-state-json"):
            text = json.dumps(obj, **kw)
            f.write(text[: len(text) // 2])
            f.flush()
            die()
        return real_dump(obj, f, **kw)

    def replace(a, b):
        if reached("before-rename"):
            die()
        return real_replace(a, b)

    def rmtree(path, *a, **k):
        if reached("before-cleanup"):
            die()
        return real_rmtree(path, *a, **k)

    def loss(*a, **k):
        if reached("window"):
            die()
        return real_loss(*a, **k)

    store.save_file, store.json.dump, os.replace, store.shutil.rmtree, tbptt.tbptt_loss = save_file, dump, replace, rmtree, loss


results = []
for name, point, n in points:
    out = os.path.join(root, name)
    pid = os.fork()
    if pid == 0:
        try:
            if point not in ("none", "external"):
                arm(point, n)
            code = main(["train", text, "--out", out, *flags])
        except BaseException:
            code = 99
        os._exit(code)
    if point == "external":  # wait for the first checkpoint, then a little more, then kill
        first = os.path.join(out, "last", "state.json")
        waited = time.time() + 60
        while not os.path.exists(first) and time.time() < waited:
            time.sleep(0.002)
        time.sleep(n)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first
            pass
    deadline = time.time() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    results.append({"name": name, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None})
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Run the harness: the uninterrupted run ("straight") and one killed run per point."""
    root = tmp_path_factory.mktemp("kill")
    text = root / "text.txt"
    text.write_text(tiny_text(80, seed=1), encoding="utf-8")
    points = [("straight", "none", 0), *[(f"run{k}", point, n) for k, (_, point, n) in enumerate(POINTS)]]
    done = subprocess.run([sys.executable, "-c", HARNESS, str(text), str(root), json.dumps(points), json.dumps(FLAGS)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["name"]: r for r in json.loads(done.stdout.strip().splitlines()[-1])}
    assert results["straight"]["exit"] == 0, results["straight"]
    return root, results


def tensors(checkpoint: Path) -> dict:
    return {name: load_file(str(checkpoint / name)) for name in store.TENSOR_FILES}


def assert_identical(a: dict, b: dict):
    for name in store.TENSOR_FILES:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


@pytest.mark.parametrize("k", range(len(POINTS)), ids=[p[0] for p in POINTS])
def test_killed_then_resumed_equals_never_killed(killed, capsys, k):
    root, results = killed
    what, point, _ = POINTS[k]
    run, result = root / f"run{k}", results[f"run{k}"]
    if result["signal"] is None:  # an outside kill that came after the run had finished
        assert point == "external" and result["exit"] == 0, result
    else:
        assert result["signal"] == 9, result  # SIGKILL: no handler ran, nothing was tidied
    try:
        last = store.resolve(run, prefer="last")
    except store.UserError:
        last = None
    if last is None:  # killed before its first checkpoint: resuming says so in one sentence
        assert point in ("window", "external"), f"{what}: no checkpoint survived"
        assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and any(w in err for w in ("before its first checkpoint", "does not exist", "not a checkpoint")), err
        report("kill and resume", "SIGKILL " + what, 1, "nothing to resume: one sentence, exit 2")
        return
    saved = store.read(last, prefer="last")  # the last checkpoint always loads, whole and checked
    assert saved.state["step"] % 2 == 0 and load(run) is not None
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_identical(tensors(root / "straight" / "last"), tensors(run / "last"))
    assert not list(run.glob(".last.*")), "the resumed run leaves no temporary copy of last/"
    report("kill and resume", "SIGKILL " + what, 1,
           f"last checkpoint (step {saved.state['step']}) loads; resumed weights equal the uninterrupted run's")
