"""unrolled.MinGRU and unrolled.MinLSTM (unrolled.minimal): the three paths against each other
and against a NumPy step written from the equations, the loop both compiled ("loop") and in
torch ("loop-python", as without a C++ compiler), carried state, gradients by finite
differences, the compiled loop's threads against its serial run, the cell facts, and
`--cell mingru|minlstm` through train, sample, eval, cells, saturation and the viewer's API.
Tiny distinct shapes (B=3, T=7, D=4, H=5, L=2), float64 unless said."""
from __future__ import annotations

import json
import platform

import numpy as np
import pytest
import torch
from torch.func import functional_call

import unrolled
from unrolled.cells import CELLS, facts
from unrolled.charlm.device import parameter_count
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary
from unrolled.cli import main
from unrolled.kernels import native, recurrence
from unrolled.minimal import MinimalLoop, coefficients, log_pos, pos, scan_log
from unrolled.understand import record
from test_train import tiny_text
from compiled_loops import compiled_or_skip

LAYERS = [unrolled.MinGRU, unrolled.MinLSTM]
B, T, D, H, L = 3, 7, 4, 5, 2


def layer_and_input(cls, seed=0, num_layers=L, bias=True):
    torch.manual_seed(seed)
    m = cls(D, H, num_layers, bias=bias).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    state = torch.randn(num_layers, B, H, dtype=torch.float64)  # either sign: the scan takes any h_0
    return m, x, state


def use(how, x, monkeypatch):
    """The path for `how`: "loop-python" is the loop with the compiled one switched off (what
    every kernel asks, native.ops_for, answers None); "loop" must then be the compiled one."""
    if how == "loop-python":
        monkeypatch.setattr(native, "ops_for", lambda x: None)
        assert not recurrence.available(x)
        return "loop"
    if how == "loop":
        compiled_or_skip()
        assert recurrence.available(x)
    return how


# --- the paths agree -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("how", ["scan", "loop", "loop-python"])
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_parallel_equals_readable(cls, how, given, bias, monkeypatch):
    m, x, state = layer_and_input(cls, bias=bias)
    how = use(how, x, monkeypatch)
    s0 = state if given else None
    out_r, h_r = m.readable(x, s0)
    out_p, h_p = m.parallel(x, s0, how=how)
    assert out_p.shape == (B, T, H) and h_p.shape == (L, B, H)
    torch.testing.assert_close(out_p, out_r, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_p, h_r, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_p[-1], out_p[:, -1], atol=0, rtol=0)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("path", ["readable", "scan", "loop", "loop-python", "auto"])
def test_two_halves_with_the_carried_state_equal_the_whole(cls, path, monkeypatch):
    m, x, state = layer_and_input(cls, seed=1)
    m.path = use(path, x, monkeypatch)
    whole, h_whole = m(x, state)
    first, h_mid = m(x[:, :3], state)
    second, h_end = m(x[:, 3:], h_mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_end, h_whole, atol=1e-10, rtol=0)


def test_auto_takes_the_loop_on_the_cpu():
    m, x, _ = layer_and_input(unrolled.MinGRU)
    assert m._auto_path(x) == "loop"


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("how", ["scan", "loop", "loop-python", "readable"])
def test_gradcheck_inputs_state_and_weights(cls, how, monkeypatch):
    torch.manual_seed(2)
    m = cls(3, 4, 2).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    how = use(how, x, monkeypatch)
    s = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())

    def f(x, s, *ps):
        m.path = how
        return tuple(functional_call(m, dict(zip(names, ps)), (x, s)))

    assert torch.autograd.gradcheck(f, (x, s, *params))


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("compiled", [True, False])
def test_the_loops_backward_equals_autograd_of_the_readable_loop(kind, compiled):
    """The hand-written backwards (the compiled loop's, MinimalLoop's) against autograd through
    plain tensor ops, including pre-activations far in the tails, where a sign slip in pos' or the
    normalisation would show."""
    torch.manual_seed(3)
    G = facts(kind).num_gates
    pre = (torch.randn(B, T, G * H, dtype=torch.float64) * 6).requires_grad_()
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(B, T, H, dtype=torch.float64)
    if compiled:
        compiled_or_skip()
    loop = recurrence.MinimalSequence if compiled else MinimalLoop
    (loop.apply(pre, h0, kind) * w).sum().backward()
    grads = pre.grad.clone(), h0.grad.clone()
    pre.grad = h0.grad = None
    a, b = coefficients(kind, pre, log=False)
    h, outs = h0, []
    for t in range(T):
        h = a[:, t] * h + b[:, t]
        outs.append(h)
    (torch.stack(outs, dim=1) * w).sum().backward()
    torch.testing.assert_close(grads[0], pre.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[1], h0.grad, atol=1e-12, rtol=0)


def _kernel_run(kind, pre, h0, dy):
    """The compiled loop's output and both gradients for pre-activations pre and output gradient dy."""
    pre, h0 = pre.clone().requires_grad_(), h0.clone().requires_grad_()
    out = recurrence.MinimalSequence.apply(pre, h0, kind)
    return [out, *torch.autograd.grad((out * dy).sum(), [pre, h0])]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_the_compiled_loops_threads_equal_its_serial_run(kind, dtype, threads, monkeypatch):
    """B = 3 rows over up to 3 threads, H = 5: the default grain runs this serially, grain 1
    (read by the C++ loop at each call) puts one row a task on ATen's pool. Bit for bit: a row's
    steps are the same code either way and no product is involved."""
    compiled_or_skip()
    torch.manual_seed(9)
    G = facts(kind).num_gates
    pre, h0 = torch.randn(3, 9, G * 5, dtype=dtype) * 3, torch.randn(3, 5, dtype=dtype)
    dy = torch.randn(3, 9, 5, dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.delenv("UNROLLED_NATIVE_GRAIN", raising=False)
        serial = _kernel_run(kind, pre, h0, dy)
        monkeypatch.setenv("UNROLLED_NATIVE_GRAIN", "1")
        parallel = _kernel_run(kind, pre, h0, dy)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls", LAYERS)
def test_the_compiled_loop_in_float32_equals_the_readable_loop_in_float64(cls):
    """float32 (the activations' fexp, within 2e-7 of exp) against the float64 readable loop on
    the same weights: output, final state and every gradient to 1e-6."""
    compiled_or_skip()
    m64, x64, s64 = layer_and_input(cls, seed=10)
    m32 = cls(D, H, L).float()
    m32.load_state_dict(m64.state_dict())
    x32, s32 = x64.float(), s64.float()
    assert recurrence.available(x32)
    results = []
    for m, x, s, run in ((m64, x64, s64, m64.readable), (m32, x32, s32, lambda x, s: m32.parallel(x, s, how="loop"))):
        x, s = x.clone().requires_grad_(), s.clone().requires_grad_()
        out, h = run(x, s)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, H)).sum() + h.sum(), [x, s, *m.parameters()])
        results.append([out, h, *grads])
    for want, got in zip(*results):
        torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-6)


def test_the_compiled_loop_stays_finite_where_gates_saturate():
    """Pre-activations of +-40 and +-800: the minLSTM's f' = f / (f + i) from exponentials
    scaled to never overflow nor underflow, finite in both dtypes and equal to the torch loop,
    which takes it as sigmoid(log f - log i)."""
    compiled_or_skip()
    torch.manual_seed(11)
    for scale, dtype in ((40, torch.float32), (800, torch.float64)):
        pre = (torch.randn(2, 64, 3 * H) * scale).to(dtype).requires_grad_()
        h0 = torch.randn(2, H, dtype=dtype)
        dy = torch.randn(2, 64, H, dtype=dtype)
        got = _kernel_run("minlstm", pre, h0, dy)
        want = MinimalLoop.apply(pre, h0, "minlstm")
        want = [want, *torch.autograd.grad((want * dy).sum(), [pre])]
        assert all(torch.isfinite(t).all() for t in got)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"),
                    reason="subnormals are flushed through the SSE control register, x86 only")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_compiled_loop_flushes_subnormals_on_every_thread_and_restores_the_callers(threads, monkeypatch):
    """A minGRU step from h = 0 with z = sigmoid(-20) and n = sigmoid(-70): z n = 8e-40, a float32
    subnormal, which torch's loop keeps and the compiled loop flushes to zero (on the pool's threads
    too: grain 1, one row a task), after which the caller's thread still computes subnormals."""
    compiled_or_skip()
    B, H_ = 3, 4
    pre = torch.cat([torch.full((B, 2, H_), -20.0), torch.full((B, 2, H_), -70.0)], dim=-1)
    h0 = torch.zeros(B, H_)
    want = MinimalLoop.apply(pre, h0, "mingru")
    tiny = torch.finfo(torch.float32).tiny
    assert ((want > 0) & (want < tiny)).all()  # the oracle's are subnormal: the check can fail
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    monkeypatch.setenv("UNROLLED_NATIVE_GRAIN", "1")
    try:
        got = recurrence.MinimalSequence.apply(pre, h0, "mingru")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, torch.zeros_like(got))
    after = torch.tensor([1e-39]) * torch.tensor([0.5])
    assert 0 < after.item() < tiny  # the calling thread's own setting is back
    monkeypatch.setenv("UNROLLED_NATIVE_SUBNORMALS", "keep")  # benchmarks/subnormals.py's switch
    torch.testing.assert_close(recurrence.MinimalSequence.apply(pre, h0, "mingru"), want, rtol=1e-5, atol=0)


# --- a NumPy oracle, no torch.nn -----------------------------------------------------------------
def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_pos(v):
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def np_step(kind, x, h, W, b):
    """One step from the paper's equations: x (B, D), h (B, H), W (G*H, D), b (G*H,)."""
    k = x @ W.T + b  # (B, G*H)
    if kind == "mingru":
        z, n = sigmoid(k[:, :H]), np_pos(k[:, H:])
        return (1 - z) * h + z * n
    f, i, g = sigmoid(k[:, :H]), sigmoid(k[:, H:2 * H]), np_pos(k[:, 2 * H:])
    return f / (f + i) * h + i / (f + i) * g


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("path", ["readable", "scan", "loop"])
def test_one_step_equals_numpy(cls, path):
    m, x, state = layer_and_input(cls, seed=4, num_layers=1)
    m.path = path
    W, b = (p.detach().numpy() for p in m.layer_weights(0))
    out, h = m(x[:, :1], state)
    want = np_step(m.kind, x[:, 0].numpy(), state[0].numpy(), W, b)
    np.testing.assert_allclose(out[:, 0].detach().numpy(), want, atol=1e-12, rtol=0)
    np.testing.assert_allclose(h[0].detach().numpy(), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", LAYERS)
def test_two_layers_over_time_equal_numpy(cls):
    m, x, state = layer_and_input(cls, seed=5)
    seq = x.numpy()
    for k in range(L):
        W, b = (p.detach().numpy() for p in m.layer_weights(k))
        h, outs = state[k].numpy(), []
        for t in range(T):
            h = np_step(m.kind, seq[:, t], h, W, b)
            outs.append(h)
        seq = np.stack(outs, axis=1)  # (B, T, H): the next layer's input
    out, _ = m(x, state)
    np.testing.assert_allclose(out.detach().numpy(), seq, atol=1e-10, rtol=0)


def test_pos_and_its_logarithm():
    v = torch.tensor([-30.0, -2.0, -1e-3, 0.0, 1e-3, 2.0, 30.0], dtype=torch.float64)
    np.testing.assert_allclose(pos(v).numpy(), np_pos(v.numpy()), atol=1e-15, rtol=0)
    np.testing.assert_allclose(log_pos(v).numpy(), np.log(np_pos(v.numpy())), atol=1e-15, rtol=1e-13)


def test_the_scan_stays_finite_where_gates_saturate():
    """Pre-activations of +-40 in float32: the gates are 0 or 1 to float32, the scan in log space
    stays finite and equals the loop."""
    torch.manual_seed(6)
    pre = torch.randn(2, 64, 2 * H) * 40  # (B, T, 2H)
    h0 = torch.randn(2, H)
    scan = scan_log(*coefficients("mingru", pre, log=True), h0)
    loop = MinimalLoop.apply(pre, h0, "mingru")
    assert torch.isfinite(scan).all()
    torch.testing.assert_close(scan, loop, atol=1e-3, rtol=1e-4)


# --- facts, parameters, records, bad input --------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
def test_facts_parameters_and_records(cls):
    class Subclass(cls):  # a user's subclass is the same cell
        pass

    m, x, state = layer_and_input(Subclass)
    cell = facts(m)
    assert cell is CELLS[cls.kind] and not cell.hidden_weights
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == {
        "weight_ih_l0": (cell.num_gates * H, D), "bias_ih_l0": (cell.num_gates * H,),
        "weight_ih_l1": (cell.num_gates * H, H), "bias_ih_l1": (cell.num_gates * H,)}
    assert all(p.abs().max() <= 1 / H ** 0.5 for p in m.parameters())
    out, h, trace = m.readable(x, state, record=True)
    assert len(trace) == L and all(set(rec) == set(cell.state_keys) for rec in trace)
    torch.testing.assert_close(trace[-1]["h"], out, atol=0, rtol=0)
    for key in cell.sigmoid_gates:
        assert ((trace[0][key] > 0) & (trace[0][key] < 1)).all()
    if cls is unrolled.MinLSTM:  # the normalised gates sum to one
        torch.testing.assert_close(trace[1]["f"] + trace[1]["i"], torch.ones(B, T, H, dtype=torch.float64))


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "rnn", "lstm", "gru"])
def test_parameter_count_from_the_config(cell):
    vocab = Vocabulary(list("abcdefg"))
    for embedding in (0, 6):
        model = CharLM(vocab, unrolled.charlm.config.ModelConfig(cell=cell, hidden_size=H, num_layers=3,
                                                                 embedding_size=embedding))
        assert parameter_count(len(vocab), model.config) == model.num_parameters()


@pytest.mark.parametrize("kwargs, words", [({"bidirectional": True}, "left to right"),
                                           ({"path": "fast"}, "path must be one of"),
                                           ({"dropout": 1.0}, "dropout"), ({"num_layers": 0}, "num_layers")])
def test_bad_construction(kwargs, words):
    args = {"input_size": D, "hidden_size": H, **kwargs}
    with pytest.raises(ValueError, match=words):
        unrolled.MinGRU(**args)


def test_bad_input_and_state():
    m, x, state = layer_and_input(unrolled.MinLSTM)
    with pytest.raises(ValueError, match=r"state of shape \(2, 3, 5\)"):
        m(x, state[:1])
    with pytest.raises(ValueError, match="input of shape"):
        m(x[..., :2])
    with pytest.raises(ValueError, match="no lengths"):
        m(x, state, lengths=[7, 7, 7])
    with pytest.raises(ValueError, match="how must be"):
        m.parallel(x, how="fast")


# --- the whole tool -------------------------------------------------------------------------------
SMALL = ["--hidden-size", "12", "--num-layers", "2", "--embedding-size", "6", "--batch-size", "2",
         "--seq-len", "8", "--eval-every", "10", "--warmup-steps", "2", "--quiet"]


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_train_sample_eval_cells_saturation(tmp_path, capsys, cell):
    text = tmp_path / "text.txt"
    text.write_text(tiny_text(150), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(text), "--cell", cell, "--out", str(run), "--max-steps", "20", *SMALL]) == 0
    model = unrolled.load(str(run))
    assert facts(model.rnn) is CELLS[cell] and type(model.rnn).__name__ == {"mingru": "MinGRU"}.get(cell, "MinLSTM")
    capsys.readouterr()
    assert main(["sample", str(run), "--length", "30", "--seed", "3", "--prime", "the "]) == 0
    assert capsys.readouterr().out.startswith("the ")
    assert main(["eval", str(run), str(text), "--json"]) == 0
    bpc = json.loads(capsys.readouterr().out)["results"][0]["bits_per_char"]
    assert 0 < bpc < np.log2(len(model.vocab)) + 0.5  # finite, and near or below a uniform guess after 20 updates
    assert main(["cells", str(run), str(text), "--out", str(tmp_path / "cells.html"), "--top", "2"]) == 0
    capsys.readouterr()
    assert main(["saturation", str(run), str(text), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(row["gate"], row["layer"]) for row in rows} == {(g, k) for g in CELLS[cell].sigmoid_gates for k in (0, 1)}


def test_viewer_api_on_a_mingru(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient  # the web extra is optional

    from unrolled.web.app import create_app  # needs the web extra, as above
    from unrolled.web.server import build_explorer  # likewise

    text = tmp_path / "text.txt"
    text.write_text(tiny_text(100), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(text), "--cell", "mingru", "--out", str(run), "--max-steps", "10", *SMALL]) == 0
    explorer, tid = build_explorer(str(run), str(text))
    client = TestClient(create_app(explorer))
    assert client.get("/api/info").json()["cell"] == "mingru"
    z = client.get(f"/api/activations?text={tid}&layer=1&kind=z&units=0,3").json()
    assert z["range"] == [0.0, 1.0] and len(z["units"]) == 2
    h = client.get(f"/api/activations?text={tid}&layer=0&kind=h&units=1").json()
    values = np.array(h["units"][0]["values"])
    assert (values > 0).all() and h["range"][1] >= values.max() - 1e-4  # h > 0, unbounded: its own range
    gates = client.get(f"/api/saturation?text={tid}").json()["gates"]
    assert {(g["gate"], g["layer"]) for g in gates} == {("z", 0), ("z", 1)}


def test_forget_bias_starts_the_minlstm_remembering():
    vocab, f_mean = Vocabulary(list("abcdefg")), {}
    for bias in (0.0, 3.0):
        torch.manual_seed(0)
        model = CharLM(vocab, unrolled.charlm.config.ModelConfig(cell="minlstm", hidden_size=H, num_layers=2,
                                                                 forget_bias=bias))
        for k in range(2):
            b = model.rnn.layer_weights(k)[1]
            assert (b[:H] == 3.0).all() == (bias == 3.0) and not (b[H:] == 3.0).any()  # the f rows only
        _, _, trace = model.rnn.readable(model.embed(torch.arange(7)[None]), record=True)
        f_mean[bias] = trace[0]["f"].mean().item()
    assert f_mean[3.0] > f_mean[0.0] + 0.1  # f' = f / (f + i): the cell starts nearer to keeping its state


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_recording_with_parallel_streams_equals_the_plain_loop(cell):
    """unrolled.understand.record (streams advancing a window at a time, each warmed up on the
    characters before it) holds what the readable loop gives reading the text from there."""
    text = tiny_text(3)
    torch.manual_seed(8)
    model = CharLM(Vocabulary(sorted(set(text))), unrolled.charlm.config.ModelConfig(
        cell=cell, hidden_size=H, num_layers=2, embedding_size=4)).double()
    keep = np.array([0, 5, 40, 41, len(text) - 1])
    rec = record(model, text, streams=3, window=4, warmup=5, positions=keep)
    Ls = rec.meta["stream_length"]
    for k, p in enumerate(keep):
        s = p // Ls
        start = max(0, s * Ls - 5) if s else 0
        ids = torch.tensor([model.vocab.encode(text[start:p + 1])])
        _, _, trace = model.rnn.readable(model.embed(ids), None, record=True)
        for layer in range(2):
            for key in CELLS[cell].state_keys:
                np.testing.assert_allclose(rec.states[f"{key}{layer}"][k], trace[layer][key][0, -1].detach().numpy(),
                                           atol=1e-6)
