"""Training: truncated BPTT carries the state and cuts the graph, schedules, clipping, stopping,
checkpoints and metrics, fine-tuning, and a tiny model that overfits a short text."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import B, T
from unrolled.charlm.optim import clip_gradients, learning_rate
from unrolled.charlm.tbptt import tbptt_loss
from unrolled.charlm.trainer import train
from unrolled.charlm.config import Config, ModelConfig, TrainConfig
from unrolled.errors import UserError
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary

V_TEXT = "abcdeé\n"  # V = 7 symbols


def tiny_text(n_lines=60, seed=0) -> str:
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "mat", "café", "and", "dog"]
    return "".join(" ".join(rng.choice(words, size=5)) + ".\n" for _ in range(n_lines))


def tiny(tmp_path, **kw):
    """A few-second run on a tiny text; every setting can be overridden."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    f = tmp_path / "tiny.txt"
    if not f.exists():
        f.write_text(tiny_text(), encoding="utf-8")
    args = dict(paths=[str(f)], out=str(tmp_path / "run"), hidden_size=16, num_layers=1, embedding_size=8,
                batch_size=B, seq_len=8, max_steps=6, eval_every=3, warmup_steps=2, progress=False)
    args.update(kw)
    return train(**args)


def lstm_model(**kw):
    torch.manual_seed(0)
    return CharLM(Vocabulary.from_text(V_TEXT), ModelConfig(hidden_size=5, num_layers=2, embedding_size=4, **kw)).double()


def test_tbptt_carries_state_and_cuts_the_graph():
    model = lstm_model()
    x = torch.randint(0, 7, (B, 2 * T))  # two windows of T
    y = torch.randint(0, 7, (B, 2 * T))
    # The carried state after window 1 is the state the full sequence has after T steps ...
    loss1, carry = tbptt_loss(model, x[:, :T], y[:, :T], None, T)
    _, full_state = model(x[:, :T])
    torch.testing.assert_close(carry, full_state)
    # ... detached: nothing flows back through it into window 1.
    assert all(s.grad_fn is None and not s.requires_grad for s in carry)
    s0 = tuple(s.clone().requires_grad_(True) for s in carry)
    loss2, _ = tbptt_loss(model, x[:, T:], y[:, T:], s0, T)
    loss2.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in s0)  # the window reaches its first step


def test_tbptt_gradient_equals_torch_nn_with_detached_state():
    """Oracle: torch.nn.LSTM run over window 2 from window 1's state, detached by hand."""
    model = lstm_model()
    ref = nn.LSTM(4, 5, 2, batch_first=True).double()
    ref.load_state_dict(model.rnn.state_dict())
    x, y = torch.randint(0, 7, (B, 2 * T)), torch.randint(0, 7, (B, 2 * T))
    _, carry = tbptt_loss(model, x[:, :T], y[:, :T], None, T)
    model.zero_grad()
    loss, _ = tbptt_loss(model, x[:, T:], y[:, T:], carry, T)
    loss.backward()

    with torch.no_grad():
        _, s = ref(model.embedding(x[:, :T]))
    out, _ = ref(model.embedding(x[:, T:]).detach(), tuple(t.detach() for t in s))
    ref_loss = nn.functional.cross_entropy(model.head(out).reshape(-1, 7), y[:, T:].reshape(-1))
    grads = torch.autograd.grad(ref_loss, list(ref.parameters()))
    torch.testing.assert_close(loss, ref_loss)
    for (name, p), g in zip(ref.named_parameters(), grads):
        torch.testing.assert_close(getattr(model.rnn, name).grad, g)


def test_tbptt_k1_less_than_k2_scores_only_new_positions():
    model = lstm_model()
    k1, k2 = 2, 5
    x, y = torch.randint(0, 7, (B, k2)), torch.randint(0, 7, (B, k2))
    loss, carry = tbptt_loss(model, x, y, None, k1)
    logits, _ = model(x)
    _, after_k1 = model(x[:, :k1])
    torch.testing.assert_close(carry, after_k1)  # the next window (k1 later) starts from here
    want = nn.functional.cross_entropy(logits[:, k2 - k1:].reshape(-1, 7), y[:, k2 - k1:].reshape(-1))
    torch.testing.assert_close(loss, want)


def test_learning_rate_schedules():
    t = TrainConfig(lr=1.0, warmup_steps=4, decay_steps=14, min_lr_ratio=0.1)
    assert learning_rate(t, 0, 0) == pytest.approx(0.25)  # warmup
    assert learning_rate(t, 3, 0) == pytest.approx(1.0)
    assert learning_rate(t, 100, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)  # cosine half way
    assert learning_rate(t, 100, 1.0) == pytest.approx(0.1)  # floor
    s = TrainConfig(lr=1.0, warmup_steps=0, schedule="step", step_size=10, gamma=0.5)
    assert [learning_rate(s, k, 0) for k in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    e = TrainConfig(lr=1.0, warmup_steps=0, schedule="exponential", gamma=0.5)
    assert learning_rate(e, 2000, 0) == pytest.approx(0.25)
    c = TrainConfig(lr=0.3, warmup_steps=0, schedule="constant")
    assert learning_rate(c, 12345, 0.9) == 0.3


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_clipping(clip):
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p.grad = torch.tensor([3.0, -4.0, 0.5], dtype=torch.float64)
    norm = clip_gradients([p], TrainConfig(clip=clip, clip_value=1.0))
    assert norm == pytest.approx(math.sqrt(9 + 16 + 0.25))
    if clip == "norm":
        torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0, dtype=torch.float64))
    else:
        torch.testing.assert_close(p.grad, torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))


def test_tiny_model_overfits_a_short_text(tmp_path):
    text = "hello world, hello unrolled! " * 6
    f = tmp_path / "short.txt"
    f.write_text(text)
    r = train(paths=[str(f)], out=str(tmp_path / "run"), val_fraction=0.0, test_fraction=0.0,
              hidden_size=32, num_layers=1, embedding_size=0, batch_size=1, seq_len=29, lr=0.03,
              warmup_steps=0, schedule="constant", max_steps=80, eval_every=1000, seed=0, forget_bias=1.0,
              progress=False)
    assert r.metrics["train_bpc"] < 0.3  # from log2(15) ~ 3.9 bits at the start
    from unrolled import sample
    assert sample(r.model, length=29, argmax=True, prime="hello ") == "hello " + (text * 2)[6:35]


def test_run_directory_checkpoints_and_metrics(tmp_path):
    r = tiny(tmp_path)
    run = r.run_dir
    assert (run / "best" / "model.safetensors").exists() and (run / "last" / "state.json").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    splits = [row["split"] for row in rows]
    assert splits.count("val") == 2 and splits[-1] == "test"
    last = json.loads((run / "last" / "state.json").read_text())
    assert last["step"] == 6 and last["window"] == 6 and last["config"]["train"]["decay_steps"] == 6
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 16
    assert r.stopped == "max_steps" and 0 < r.metrics["test_bpc"] < 10
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary directories left


def test_epochs_limit_and_state_reset_per_pass(tmp_path):
    r = tiny(tmp_path, max_steps=None, max_epochs=2.0, eval_every=10_000)
    last = json.loads((r.run_dir / "last" / "state.json").read_text())
    per_epoch = last["data"]["windows_per_epoch"]
    assert r.stopped == "max_epochs" and r.step == 2 * per_epoch and r.epoch == 1


def test_early_stopping(tmp_path):
    # With a learning rate this small validation barely moves; the counter stops the run after the
    # first validation that is not better than the best.
    r = tiny(tmp_path, lr=1e-9, warmup_steps=0, schedule="constant", max_steps=100, eval_every=1,
             early_stopping=1)
    assert r.stopped == "early_stopping" and r.step < 100


def test_no_validation_split_keeps_last_only(tmp_path):
    r = tiny(tmp_path, val_fraction=0.0)
    assert (r.run_dir / "last").exists() and not (r.run_dir / "best").exists()
    assert r.metrics["best_val_bpc"] is None and r.metrics["test_bpc"] > 0


def test_full_bptt_one_window_per_pass(tmp_path):
    r = tiny(tmp_path, bptt="full", max_steps=3)
    last = json.loads((r.run_dir / "last" / "state.json").read_text())
    assert last["data"]["windows_per_epoch"] == 1 and r.epoch == 2


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_other_cells_and_optimizers(tmp_path, cell):
    r = tiny(tmp_path, cell=cell, optimizer="rmsprop", schedule="plateau", dropout=0.2, num_layers=2)
    assert r.model.rnn.kind == cell and math.isfinite(r.metrics["test_bpc"])


def test_init_from_keeps_vocabulary_and_states_unknown_policy(tmp_path):
    base = tiny(tmp_path / "a")
    new = tmp_path / "new.txt"
    new.write_text("the cat sat on the mat. zebra!\n" * 20)  # z, b, r, ! are unknown
    with pytest.raises(UserError, match="never saw"):
        train(paths=[str(new)], init_from=str(base.run_dir), out=str(tmp_path / "b"), progress=False)
    assert not (tmp_path / "b").exists()  # nothing half-written
    r = train(paths=[str(new)], init_from=str(base.run_dir), out=str(tmp_path / "c"), unknown="skip",
              batch_size=B, seq_len=8, max_steps=3, eval_every=3, progress=False)
    assert r.model.vocab == base.model.vocab
    assert r.model.config.hidden_size == 16  # the checkpoint's model, not the defaults


def test_out_directory_must_be_new(tmp_path):
    tiny(tmp_path)
    with pytest.raises(UserError, match="already holds files"):
        tiny(tmp_path)


def test_text_too_short_for_one_window(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("abcdefghij")
    with pytest.raises(UserError, match="too short"):
        train(paths=[str(f)], out=str(tmp_path / "run"), batch_size=4, seq_len=50, progress=False)


def test_config_precedence():
    cfg = Config().updated(hidden_size=7, lr=None)
    assert cfg.model.hidden_size == 7 and cfg.train.lr == TrainConfig().lr
    for bad in (dict(hidden_size=0), dict(lr=float("nan")), dict(batch_size=-1), dict(dropout=1.0)):
        with pytest.raises(UserError, match="--"):
            Config().updated(**bad).check()
