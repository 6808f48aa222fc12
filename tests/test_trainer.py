"""One `Trainer.step()` on its own, against a hand-made oracle: the same model copy on the same
window, loss.backward, clip, optimizer.step. In float64, at distinct sizes (B, T, D, H, V =
2, 3, 4, 5, 7), so a transposed shape or a changed order of operations fails loudly."""
import copy

import pytest
import torch

from conftest import B, D, H, T, V
from unrolled.charlm.optim import clip_gradients, learning_rate, make_optimizer, progress
from unrolled.charlm.tbptt import tbptt_loss
from unrolled.charlm.trainer import Trainer

SYMBOLS = "abcdeé\n"  # V = 7
L = 2  # layers


def make_trainer(tmp_path, **kw) -> Trainer:
    f = tmp_path / "text.txt"
    f.write_text("".join(SYMBOLS[(i * i + i // 3) % V] for i in range(400)), encoding="utf-8")
    settings = dict(paths=[str(f)], out=str(tmp_path / "run"), cell="lstm", hidden_size=H, num_layers=L,
                    embedding_size=D, batch_size=B, seq_len=T, lr=0.05, warmup_steps=2, max_steps=10,
                    clip_value=0.1, device="cpu", progress=False)
    trainer = Trainer(**{**settings, **kw})
    trainer.model.double()  # in place: the optimizer keeps the same parameters
    return trainer


def files(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def oracle_step(trainer: Trainer, k: int, state):
    """What one update on window k from `state` does, made by hand on a copy of the model and
    of its optimizer."""
    t, step = trainer.config.train, trainer.loop.step
    model = copy.deepcopy(trainer.model)
    optimizer = make_optimizer(model.parameters(), t)
    optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
    lr = learning_rate(t, step, progress(t, trainer.limits.decay_steps, step, trainer.loop.elapsed_s))
    for group in optimizer.param_groups:
        group["lr"] = lr
    w = trainer.streams.window(k)
    loss, carry = tbptt_loss(model, w.x, w.y, state, T)
    optimizer.zero_grad()
    loss.backward()
    norm = clip_gradients(model.parameters(), t)
    optimizer.step()
    return model, optimizer, loss.item(), norm, lr, carry


def assert_same_weights_and_moments(trainer, model, optimizer):
    for name, p in trainer.model.named_parameters():
        torch.testing.assert_close(p, dict(model.named_parameters())[name], rtol=0, atol=0, msg=name)
    mine, theirs = trainer.optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for i in mine:
        for key, value in mine[i].items():
            torch.testing.assert_close(value, theirs[i][key], rtol=0, atol=0, msg=f"{i}.{key}")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_one_step_is_one_optimizer_step_of_that_loss(tmp_path, optimizer):
    trainer = make_trainer(tmp_path, optimizer=optimizer)
    before = files(tmp_path)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    model, opt, loss, norm, lr, carry = oracle_step(trainer, 0, None)

    update = trainer.step()

    assert len(trainer.data.vocab) == V and (trainer.loop.step, trainer.loop.window, trainer.loop.epoch) == (1, 1, 0)
    assert update.step == 1 and update.applied and update.chars == B * T
    assert update.loss == loss and update.grad_norm == norm and update.lr == lr == 0.05 / 2  # warmup: 1 of 2
    assert norm > 0.1  # the clip acted
    assert_same_weights_and_moments(trainer, model, opt)
    assert all(not torch.equal(p, start[name]) for name, p in trainer.model.named_parameters())
    # the carried state: the state after the window, of shape (L, B, H), cut from the graph
    h, c = trainer.carry
    assert h.shape == c.shape == (L, B, H) and h.dtype == torch.float64
    assert all(s.grad_fn is None and not s.requires_grad for s in (h, c))
    torch.testing.assert_close(h, carry[0], rtol=0, atol=0)
    torch.testing.assert_close(c, carry[1], rtol=0, atol=0)
    assert files(tmp_path) == before  # a step writes nothing: no checkpoint, no metrics row


def test_sgd_step_by_the_formula(tmp_path):
    """SGD without momentum: theta' = theta - lr * g * min(1, c / ||g||), with g from autograd on
    the same window of a copy."""
    trainer = make_trainer(tmp_path, optimizer="sgd")
    model = copy.deepcopy(trainer.model)
    w = trainer.streams.window(0)
    loss, _ = tbptt_loss(model, w.x, w.y, None, T)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = min(1.0, 0.1 / (float(norm) + 1e-6))  # clip_grad_norm_'s factor
    update = trainer.step()
    for (name, p), p0, g in zip(trainer.model.named_parameters(), model.parameters(), grads):
        torch.testing.assert_close(p, p0 - update.lr * scale * g, rtol=1e-12, atol=1e-15, msg=name)


def test_a_step_at_the_end_of_a_pass_starts_the_next_from_zero_state(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.step()
    per_epoch = trainer.limits.per_epoch
    trainer.loop.window = per_epoch  # as if the pass had just ended
    model, opt, loss, _, _, carry = oracle_step(trainer, 0, None)  # window 0 again, from zeros
    update = trainer.step()
    assert (trainer.loop.step, trainer.loop.epoch, trainer.loop.window) == (2, 1, 1)
    assert update.loss == loss
    torch.testing.assert_close(trainer.carry[0], carry[0], rtol=0, atol=0)
    assert_same_weights_and_moments(trainer, model, opt)


def test_the_carried_state_feeds_the_next_step(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.step()
    state = tuple(s.clone() for s in trainer.carry)
    model, opt, loss, _, _, _ = oracle_step(trainer, 1, state)
    assert trainer.step().loss == loss
    assert_same_weights_and_moments(trainer, model, opt)


def test_the_limits_are_computed_not_written_into_the_callers_config(tmp_path):
    from unrolled.charlm.config import Config
    given = Config().updated(max_steps=None)
    trainer = make_trainer(tmp_path, config=given, max_steps=None)
    assert trainer.limits.total_steps == trainer.limits.per_epoch == trainer.limits.decay_steps  # one epoch
    assert given.train.max_epochs is None and given.train.decay_steps is None  # the caller's: untouched
    # the run's own config says what it runs under, as it is printed and saved
    assert trainer.config.train.max_epochs == 1.0 and trainer.config.train.decay_steps == trainer.limits.decay_steps
