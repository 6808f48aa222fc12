"""Disk and file faults: a write that fails part way (no space, an I/O error, a read-only folder)
keeps the previous checkpoint and ends in one sentence; truncated, bit-flipped and foreign-version
checkpoints are refused in one sentence; a pickle in a checkpoint folder is never executed."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_reliability_report import report
from test_train import tiny_text
from unrolled import store
from unrolled import cli
from unrolled.errors import UserError

FLAGS = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--batch-size", "2", "--seq-len", "6",
         "--eval-every", "2", "--warmup-steps", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished run: last/ and best/ at step 2, and the text it was trained on."""
    d = tmp_path_factory.mktemp("base")
    (d / "text.txt").write_text(tiny_text(40, seed=5), encoding="utf-8")
    assert cli.main(["train", str(d / "text.txt"), "--out", str(d / "run"), *FLAGS, "--max-steps", "2"]) == 0
    return d


@pytest.fixture
def run(base, tmp_path):
    shutil.copytree(base, tmp_path / "copy")
    return tmp_path / "copy" / "run"


def one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unrolled: error: ") and "Traceback" not in err, err
    return err


def snapshot(checkpoint: Path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(checkpoint.iterdir())}


# --- writes that fail part way -------------------------------------------------------------------
def _no_space(name):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


@pytest.mark.parametrize("fault", ["no space in a tensor file", "no space in state.json", "I/O error in fsync"])
def test_a_failed_write_keeps_the_previous_checkpoint(run, monkeypatch, capsys, fault):
    before = snapshot(run / "last")
    if fault == "no space in a tensor file":
        real = store.save_file

        def save_file(tensors, filename):  # half the bytes reach the disk, then it is full
            blob = store.save_bytes(tensors)
            with open(filename, "wb") as f:
                f.write(blob[: len(blob) // 2])
            raise _no_space(filename)

        monkeypatch.setattr(store, "save_file", save_file)
    elif fault == "no space in state.json":
        def dump(obj, f, **kw):
            f.write(json.dumps(obj, **kw)[:100])
            raise _no_space(getattr(f, "name", None))

        monkeypatch.setattr(store.json, "dump", dump)
    else:
        def fsync(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(store.os, "fsync", fsync)
    assert cli.main(["train", "--resume", str(run), "--max-steps", "4", "--quiet"]) == 2
    err = one_sentence(capsys)
    assert f"cannot write checkpoint {run / 'last'}" in err and "is kept" in err
    assert ("No space left" in err) if "space" in fault else ("Input/output error" in err)
    monkeypatch.undo()
    assert snapshot(run / "last") == before  # byte for byte the checkpoint of step 2
    assert store.read(run, prefer="last").state["step"] == 2
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "no temporary copy left behind"
    report("disk", fault + " (simulated in the writer)", 1, "one sentence, exit 2, previous checkpoint unchanged")


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold: root may write anywhere, so as root the
    process runs without the capabilities that let it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot stop this process")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.mark.parametrize("metrics_writable", [False, True], ids=["whole folder read-only", "checkpoints read-only"])
def test_a_read_only_run_folder(run, metrics_writable):
    """A real permission error: the resumed run cannot write into its folder."""
    before = snapshot(run / "last")
    if metrics_writable:
        os.chmod(run / "metrics.jsonl", 0o666)
    else:
        os.chmod(run / "metrics.jsonl", 0o444)
    os.chmod(run, 0o555)
    try:
        done = subprocess.run([*_without_root_powers(), sys.executable, "-m", "unrolled", "train", "--resume", str(run),
                               "--max-steps", "4", "--quiet"], capture_output=True, text=True, timeout=180)
    finally:
        os.chmod(run, 0o755)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("unrolled: error: "), done.stderr
    assert "Permission denied" in done.stderr
    assert (f"cannot write checkpoint {run / 'last'}" if metrics_writable else "metrics.jsonl") in done.stderr
    assert snapshot(run / "last") == before
    report("disk", "permission denied: " + ("checkpoint folder" if metrics_writable else "run folder") + " read-only (real)",
           1, "one sentence, exit 2, previous checkpoint unchanged")


# --- damaged checkpoints ---------------------------------------------------------------------------
FILES = ("state.json", *store.TENSOR_FILES)


def refused(checkpoint: Path) -> str:
    with pytest.raises(UserError) as e:
        store.read(checkpoint, full=True)
    return str(e.value)


def test_truncated_or_missing_files_are_refused(run, capsys):
    cases = 0
    for name in FILES:
        f = run / "last" / name
        whole = f.read_bytes()
        for length in (0, 1, len(whole) // 2, len(whole) - 1):
            f.write_bytes(whole[:length])
            assert "damaged" in refused(run / "last")
            assert cli.main(["inspect", str(run / "last")]) == 2
            assert "damaged" in one_sentence(capsys)
            cases += 1
        f.unlink()
        message = refused(run / "last") if name != "state.json" else ""
        if name != "state.json":
            assert "is missing" in message
        else:  # a checkpoint folder without state.json is not a checkpoint
            with pytest.raises(UserError, match="not a checkpoint"):
                store.read(run / "last")
        cases += 1
        f.write_bytes(whole)
    store.read(run / "last")
    report("checkpoint files", "truncated (0, 1, half, all but 1 byte) or missing, each of the 4 files", cases,
           "refused in one sentence")


def test_every_bit_flip_is_refused_or_harmless(run):
    """Single-bit flips at random places of each file: the tensor files are refused by their
    SHA-256; state.json by its checksum or its parser, unless the flip left the same content
    (e.g. 1e-05 -> 1E-05)."""
    rng = np.random.default_rng(0)
    original = store.read(run / "last", full=True)
    detected, harmless = 0, 0
    for name in FILES:
        f = run / "last" / name
        whole = f.read_bytes()
        for bit in rng.choice(len(whole) * 8, size=40, replace=False):
            flipped = bytearray(whole)
            flipped[bit // 8] ^= 1 << (bit % 8)
            f.write_bytes(bytes(flipped))
            try:
                got = store.read(run / "last", full=True)
            except UserError as e:
                assert str(run / "last") in str(e), str(e)  # names the checkpoint
                detected += 1
                continue
            assert name == "state.json", f"a flipped bit {bit} in {name} was not noticed"
            assert got.state == original.state  # the same content: nothing to refuse
            harmless += 1
        f.write_bytes(whole)
    assert detected + harmless == 160 and detected >= 150
    report("checkpoint files", "one flipped bit at a random place (40 per file)", detected,
           "refused: SHA-256 mismatch, or state.json unreadable")
    if harmless:
        report("checkpoint files", "one flipped bit that leaves state.json's content the same (1e-05 -> 1E-05)",
               harmless, "loads, identical content")


def _rewrite_state(checkpoint: Path, change) -> None:
    state = json.loads((checkpoint / "state.json").read_text())
    state = change(state)
    if isinstance(state, dict) and "checksum" in state:  # as another writer would: consistent
        state["checksum"] = store.content_checksum(state)
    (checkpoint / "state.json").write_text(json.dumps(state))


FOREIGN = {
    "version 0": (lambda s: {**s, "version": 0}, "format version 0"),
    "version 2": (lambda s: {**s, "version": 2}, "format version 2"),
    "version 99": (lambda s: {**s, "version": 99}, "format version 99"),
    "version '1' (a string)": (lambda s: {**s, "version": "1"}, "format version 1"),
    "no version": (lambda s: {k: v for k, v in s.items() if k != "version"}, "format version None"),
    "another format": (lambda s: {**s, "format": "other-tool"}, "not an unrolled checkpoint"),
    "no format": (lambda s: {k: v for k, v in s.items() if k != "format"}, "not an unrolled checkpoint"),
    "a JSON list": (lambda s: [1, 2], "not an unrolled checkpoint"),
    "a JSON string": (lambda s: "checkpoint", "not an unrolled checkpoint"),
    "a config from another model": (lambda s: {**s, "config": {**s["config"], "model": {**s["config"]["model"],
                                    "hidden_size": 99}}}, "does not describe a model"),
    "no vocabulary": (lambda s: {k: v for k, v in s.items() if k != "vocab"}, "does not describe a model"),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_or_other_version_checkpoints_are_refused(run, capsys, case):
    change, words = FOREIGN[case]
    _rewrite_state(run / "last", change)
    for command in (["inspect"], ["sample", "--length", "5", "--seed", "1"], ["eval"]):
        args = [command[0], str(run / "last"), *command[1:]]
        if command[0] == "eval":
            args.append(str(run.parent / "text.txt"))
        if command[0] == "inspect" and words == "does not describe a model":
            continue  # inspect shows what is there; it builds no model
        assert cli.main(args) == 2
        assert words in one_sentence(capsys)
    report("checkpoint files", "foreign format or version: " + case, 1, "refused in one sentence")


# --- pickles are never executed --------------------------------------------------------------------
class Payload:
    """Unpickling this creates a file: the proof that something executed code from the folder."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickles(folder: Path, marker: Path) -> None:
    bomb = pickle.dumps(Payload(str(marker)))
    for name in ("model.pt", "checkpoint.pth", "optimizer.pkl", "model.bin", "training_args.bin"):
        (folder / name).write_bytes(bomb)


def test_a_pickle_in_a_checkpoint_folder_is_never_executed(run, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "EXECUTED"
    text = str(run.parent / "text.txt")
    # 1) pickles beside a whole checkpoint; 2) only pickles; 3) model.safetensors replaced by a
    # pickle, sizes and checksums forged to match; 4) the same with a torch.save zip file
    beside = run / "last"
    _pickles(beside, marker)
    only = tmp_path / "only-pickles"
    only.mkdir()
    _pickles(only, marker)
    forged = {}
    for kind in ("pickle", "torch.save"):
        c = tmp_path / f"forged-{kind}"
        shutil.copytree(run / "best", c)
        if kind == "pickle":
            (c / "model.safetensors").write_bytes(pickle.dumps(Payload(str(marker))))
        else:
            torch.save({"weight": Payload(str(marker))}, str(c / "model.safetensors"))
        blob = (c / "model.safetensors").read_bytes()
        _rewrite_state(c, lambda s: {**s, "files": {**s["files"], "model.safetensors": len(blob)},
                                     "sha256": {**s["sha256"], "model.safetensors": __import__("hashlib").sha256(blob).hexdigest()}})
        forged[kind] = c

    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    cases = 0
    for folder, ok in ((beside, True), (only, False), (forged["pickle"], False), (forged["torch.save"], False)):
        for command in (["inspect", str(folder)], ["sample", str(folder), "--length", "5", "--seed", "1"],
                        ["eval", str(folder), text], ["train", text, "--init-from", str(folder), "--out",
                        str(tmp_path / f"ft{cases}"), *FLAGS, "--max-steps", "1"]):
            code = cli.main(command)
            if ok:
                assert code == 0, capsys.readouterr().err
                capsys.readouterr()
            else:
                assert code == 2
                message = one_sentence(capsys)
                assert any(w in message for w in ("not a checkpoint", "cannot be read")), message
            cases += 1
    assert cli.main(["train", "--resume", str(run), "--max-steps", "4", "--quiet"]) == 0  # resume reads last/
    cases += 1
    assert not marker.exists()
    report("checkpoint files", "pickle payloads in or as checkpoint files (4 folders x 4 commands, and resume)", cases,
           "never unpickled; forged ones refused in one sentence")
