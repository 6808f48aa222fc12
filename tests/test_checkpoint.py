"""Checkpoints: round trips, atomic writes, damaged or foreign checkpoints, no pickle."""
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

import unrolled
from unrolled import store
from unrolled.charlm import state
from unrolled.charlm.run import describe, load
from unrolled.charlm.config import Config, ModelConfig
from unrolled.errors import UserError
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary

CHARS = "abcdé\n "  # V = 7


def make_model(cell="lstm", embedding_size=4):
    torch.manual_seed(0)
    return CharLM(Vocabulary.from_text(CHARS), ModelConfig(cell=cell, hidden_size=5, num_layers=2,
                                                           embedding_size=embedding_size))


def write(path, model, optimizer=None, carry=None, **fields):
    tensors, meta = state.optimizer_to_flat(optimizer) if optimizer else ({}, {})
    cfg = Config(model=model.config)
    return store.save(path, {"config": cfg.to_dict(), "vocab": model.vocab.to_json(), "step": 3,
                             "optimizer": meta, **fields},
                      model.state_dict(), tensors, {**state.state_to_tensors(carry), **state.rng_to_tensors()})


@pytest.mark.parametrize("cell, emb", [("lstm", 4), ("gru", 0), ("rnn", 3)])
def test_model_round_trip(tmp_path, cell, emb):
    m = make_model(cell, emb)
    write(tmp_path / "ck", m)
    loaded = load(tmp_path / "ck")
    x = torch.randint(0, 7, (2, 3))  # (B, T)
    torch.testing.assert_close(loaded(x)[0], m(x)[0], rtol=0, atol=0)
    assert loaded.vocab == m.vocab and loaded.config == m.config and not loaded.training


def test_optimizer_and_carried_state_round_trip(tmp_path):
    m = make_model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randint(0, 7, (2, 3)))[0].sum().backward()
    opt.step()
    carry = (torch.randn(2, 2, 5), torch.randn(2, 2, 5))  # (L, B, H) each
    write(tmp_path / "ck", m, opt, carry)
    c = store.read(tmp_path / "ck")
    opt2 = torch.optim.Adam(make_model().parameters(), lr=1.0)
    opt2.load_state_dict(state.optimizer_from_flat(c.optimizer, c.state["optimizer"]))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"]
    for k in a["state"]:
        for key in a["state"][k]:
            assert torch.equal(a["state"][k][key], b["state"][k][key])
    h, cc = state.state_from_tensors(c.tensors)
    assert torch.equal(h, carry[0]) and torch.equal(cc, carry[1])


def test_a_run_directory_resolves_to_best_then_last(tmp_path):
    m = make_model()
    write(tmp_path / "run" / "last", m)
    assert store.resolve(tmp_path / "run") == tmp_path / "run" / "last"
    write(tmp_path / "run" / "best", m)
    assert store.resolve(tmp_path / "run") == tmp_path / "run" / "best"
    assert store.resolve(tmp_path / "run", prefer="last") == tmp_path / "run" / "last"
    assert store.resolve(tmp_path / "run" / "best" / "model.safetensors") == tmp_path / "run" / "best"


def test_overwrite_is_atomic_and_leaves_nothing_behind(tmp_path, monkeypatch):
    m = make_model()
    write(tmp_path / "ck", m, step_marker="old")
    real = store.save_file
    calls = []

    def failing(tensors, filename):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(tensors, filename)

    monkeypatch.setattr(store, "save_file", failing)
    with pytest.raises(UserError, match="cannot write checkpoint .*disk full.*is kept"):
        write(tmp_path / "ck", m, step_marker="new")
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step_marker"] == "old"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary directory left
    monkeypatch.setattr(store, "save_file", real)
    write(tmp_path / "ck", m, step_marker="new")
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step_marker"] == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_save_refuses_a_folder_it_did_not_write_and_replaces_its_own(tmp_path):
    m = make_model()
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    (mine / "sub" / "model.safetensors").write_bytes(b"my own bytes")
    (tmp_path / "file.txt").write_text("a file", encoding="utf-8")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "state.json").write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "state.json").write_text('{"format": "unrolled-chec', encoding="utf-8")
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    for target, why in [(mine, "holds notes.txt, sub and no state.json"), (tmp_path / "file.txt", "is a file"),
                        (tmp_path / "foreign", "has a state.json that unrolled did not write"),
                        (tmp_path / "cut", "cannot be read as a checkpoint")]:
        with pytest.raises(UserError, match=f"will not write a checkpoint to {re.escape(str(target))}: it "
                                            f"{why}.*move {re.escape(str(target))} away or give another path"):
            write(target, m)
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # every file as it was, and no temporary or set-aside folder left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "file.txt", "foreign", "mine"]

    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", m, step_marker="into an empty folder")
    write(tmp_path / "empty", m, step_marker="replaced")  # a checkpoint the store wrote is replaced
    assert store.read(tmp_path / "empty").state["step_marker"] == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "empty", "file.txt", "foreign", "mine"]


def test_missing_truncated_or_foreign_checkpoints(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a checkpoint"):
        load(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a checkpoint"):
        load(tmp_path / "notes.txt")

    m = make_model()
    write(tmp_path / "t", m)
    f = tmp_path / "t" / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(UserError, match="damaged: model.safetensors has .* bytes"):
        load(tmp_path / "t")

    write(tmp_path / "j", m)
    s = tmp_path / "j" / "state.json"
    s.write_text(s.read_text()[:40])
    with pytest.raises(UserError, match="state.json cannot be read"):
        load(tmp_path / "j")

    write(tmp_path / "other", m)
    s = tmp_path / "other" / "state.json"
    s.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="not an unrolled checkpoint"):
        load(tmp_path / "other")

    write(tmp_path / "future", m)
    s = tmp_path / "future" / "state.json"
    s.write_text(s.read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(UserError, match="version 99"):
        load(tmp_path / "future")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    m = make_model()
    write(tmp_path / "ck", m)

    def refuse(*a, **k):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    load(tmp_path / "ck")
    store.read(tmp_path / "ck")
    describe(tmp_path / "ck")


def test_describe_names_everything(tmp_path):
    m = make_model()
    write(tmp_path / "ck", m, carry=(torch.zeros(2, 2, 5), torch.zeros(2, 2, 5)))
    d = describe(tmp_path / "ck")
    assert d["vocab"]["size"] == 7 and d["step"] == 3 and d["parameters"] == m.num_parameters()
    assert d["carried_state"] == {"carry.h": [2, 2, 5], "carry.c": [2, 2, 5]} and d["rng"] == ["rng.cpu"]
    shutil.rmtree(tmp_path / "ck")


# --- a checkpoint written before the run record existed ------------------------------------------
COMMITTED = Path(__file__).resolve().parents[1] / "models" / "linux-lstm-2x128"
# Recorded with the code of commit 5f7616b (before the Trainer, state.py and store.py existed).
COMMITTED_SAMPLE = (
    "}  The core of a will used will non the audit_files\n *\n * The context is free enthreads under that "
    "gcov_info lowing the btf_mal_robustansited, the syscall true,\n *\tis is\n\t * ring means in the axgram s")
COMMITTED_PRIMED = (
    "static int request_entry(&css &= ~LSVED - 1 << 0)\n\nstatic inline bool get_user_symbol_node(struct "
    "bpf_kfunc_id, const char *buf = {\n\t.name_data_get_init(&bpf_reg_type, partition_flags);\n}\n\n"
    "static inline void put")


def test_the_committed_model_loads_and_samples_the_same_text():
    m = unrolled.load(COMMITTED)
    assert unrolled.sample(m, length=200, seed=1234) == COMMITTED_SAMPLE
    assert unrolled.sample(m, length=200, seed=7, prime="static int ", temperature=0.8, top_k=20) == COMMITTED_PRIMED


def test_the_committed_model_is_described_as_before():
    d = describe(COMMITTED)
    assert d["format"] == "unrolled-checkpoint v1" and d["written_by_torch"] == "2.13.0+cpu"
    assert (d["step"], d["epoch"], d["window"]) == (14000, 11, 668)
    assert d["elapsed_minutes"] == pytest.approx(3541.707704315 / 60)
    assert d["best_val_bpc"] == d["metrics"]["val_bpc"] == pytest.approx(2.0271681048524686)
    assert d["data"]["windows_per_epoch"] == 1212 and d["data"]["position"] == 85504
    assert d["vocab"]["kind"] == "chars" and d["vocab"]["size"] == 98
    assert d["config"]["model"] == {"cell": "lstm", "hidden_size": 128, "num_layers": 2, "dropout": 0.0,
                                    "embedding_size": 64, "forget_bias": 1.0}
    assert d["config"]["train"]["max_minutes"] == 60.0 and d["parameters"] == 250338
    assert d["optimizer"]["tensors"] == 33 and d["optimizer"]["param_groups"][0]["lr"] == pytest.approx(3.0175595928656616e-4)
    assert d["carried_state"] == {"carry.h": [2, 32, 128], "carry.c": [2, 32, 128]} and d["rng"] == ["rng.cpu"]
    assert d["schedule"] == {"name": "cosine", "lr": d["optimizer"]["param_groups"][0]["lr"], "plateau_scale": 1.0}
