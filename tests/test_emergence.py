"""Emergence over training: light snapshots leave training unchanged and hold the weights of
their step; the emergence scores follow the final unit back through them; appears() and the
command's one-sentence errors."""
import json

import pytest
import torch

from unrolled.charlm.run import load
from unrolled.charlm.snapshots import list_snapshots, train_with_snapshots
from unrolled.charlm.trainer import train
from unrolled.cli import main
from unrolled.understand.emergence import appears, emergence
from web_model import c_like

SETTINGS = dict(cell="lstm", hidden_size=6, num_layers=2, embedding_size=4, batch_size=4, seq_len=16,
                max_steps=12, eval_every=12, progress=False, seed=3, device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("emergence")
    corpus = d / "code.c"
    corpus.write_text(c_like(6_000, seed=1))
    train(paths=[str(corpus)], out=str(d / "plain"), **SETTINGS)
    train_with_snapshots(4, paths=[str(corpus)], out=str(d / "snap"), **SETTINGS)
    return d


def test_snapshots_leave_training_unchanged(runs):
    a, b = load(runs / "plain" / "last"), load(runs / "snap" / "last")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    plain = [json.loads(l) for l in (runs / "plain" / "metrics.jsonl").read_text().splitlines()]
    snap = [json.loads(l) for l in (runs / "snap" / "metrics.jsonl").read_text().splitlines()]
    drop = ("time_s", "chars_per_sec")
    assert [{k: v for k, v in r.items() if k not in drop} for r in plain] == \
        [{k: v for k, v in r.items() if k not in drop} for r in snap]


def test_snapshots_hold_the_weights_of_their_step(runs):
    snaps = list_snapshots(runs / "snap")
    assert [s for s, _ in snaps] == [0, 4, 8, 12]
    last = load(runs / "snap" / "last").state_dict()
    at12 = load(snaps[-1][1]).state_dict()
    assert all(torch.equal(last[k], at12[k]) for k in last)
    first = load(snaps[0][1]).state_dict()
    assert not all(torch.equal(first[k], at12[k]) for k in last)  # step 0 is the untrained model
    assert not (snaps[0][1] / "optimizer.safetensors").exists() or \
        (snaps[0][1] / "optimizer.safetensors").stat().st_size < 200  # light: no optimizer moments


def test_emergence_follows_the_final_unit(runs):
    text = (runs / "code.c").read_text()[:3000]
    r = emergence(runs / "snap", text, features=["in_comment", "position_in_line"], language="c", sample=None)
    assert r["steps"] == [0, 4, 8, 12] and len(r["bpc"]) == 4 and set(r["gates_open"]) == {"f0", "f1"}
    for f, e in r["features"].items():
        assert e["best_unit"][-1] == e["final_unit"]
        assert e["final_unit_strength"][-1] == pytest.approx(e["best"][-1])
        assert all(s <= b + 1e-12 for s, b in zip(e["final_unit_strength"], e["best"]))  # best is best
        assert len(e["probe"]) == 4 and e["appears"] in r["steps"]


def test_appears():
    assert appears([0, 10, 20, 30], [0.5, 0.95, 0.7, 1.0]) == 30
    assert appears([0, 10, 20, 30], [0.5, 0.92, 0.95, 1.0]) == 10
    assert appears([0, 10], [0.9, 1.0]) == 0
    assert appears([0, 10], [0.5, 0.0]) is None


def test_emergence_command_and_its_errors(runs, tmp_path, capsys):
    png = tmp_path / "e.png"
    assert main(["emergence", str(runs / "snap"), str(runs / "code.c"), "--max-chars", "2000", "--no-probes",
                 "--png", str(png), "--feature", "in_comment"]) == 0
    out = capsys.readouterr().out
    assert "in_comment" in out and png.stat().st_size > 5_000
    assert main(["emergence", str(runs / "plain"), str(runs / "code.c")]) == 2
    assert "--snapshot-every" in capsys.readouterr().err
    assert main(["train", str(runs / "code.c"), "--snapshot-every", "0", "--max-steps", "1",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--snapshot-every" in capsys.readouterr().err
