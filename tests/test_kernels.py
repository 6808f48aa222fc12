"""Our sequence kernels against the readable path (float64, forward and every gradient), gradcheck
on each autograd.Function, the sampling stepper against the model, and the bench command."""
import json

import pytest
import torch

import unrolled
from conftest import B, D, H, T, V
from compiled_loops import compiled_or_skip
from unrolled.charlm.config import ModelConfig
from unrolled.kernels import GRUSequence, LSTMSequence, Product, RNNTanhSequence, native, sequence, tanh_, tanh_into
from unrolled.recurrent import LAYERS
from unrolled.charlm.text import Vocabulary

CASES = {
    "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
    "lstm": ("lstm", {}),
    "gru": ("gru", {}),
}


@pytest.fixture(params=["native", "python"])
def loops(request, monkeypatch):
    """Each kernel test runs twice: the step loops compiled (kernels.native) and in Python."""
    if request.param == "python":
        monkeypatch.setattr(native, "ops_for", lambda x: None)  # what every kernel asks
    else:
        compiled_or_skip()
    return request.param


def _tuple(s):
    return s if isinstance(s, tuple) else (s,)


def _random_state(layer, requires_grad=True):
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    mk = lambda: torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)  # noqa: E731
    return (mk(), mk()) if layer.kind == "lstm" else mk()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_path_equals_readable(case, num_layers, bidirectional, bias, loops):
    kind, kw = CASES[case]
    layer = LAYERS[kind](D, H, num_layers, bias=bias, bidirectional=bidirectional, **kw).double()
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    state = _random_state(layer)
    dy = torch.randn(B, T, layer.output_size, dtype=torch.float64)
    results = {}
    for path in ("readable", "kernel"):
        layer.path = path
        out, final = layer(x, state)
        # the loss reaches both the outputs and the final state, so every gradient path is used
        loss = (out * dy).sum() + sum((s * s).sum() for s in _tuple(final))
        inputs = [x, *_tuple(state), *layer.parameters()]
        results[path] = (out, _tuple(final), torch.autograd.grad(loss, inputs))
    (o1, f1, g1), (o2, f2, g2) = results["readable"], results["kernel"]
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-12)
    for a, b in zip(f2, f1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert len(g1) == len(g2)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("case", CASES)
def test_kernel_path_equals_torch_nn(case, loops):
    kind, kw = CASES[case]
    ours = LAYERS[kind](D, H, 2, path="kernel", **kw).double()
    theirs = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
        D, H, 2, batch_first=True, **kw).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64)
    (o1, s1), (o2, s2) = ours(x), theirs(x)
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-12)
    for a, b in zip(_tuple(s1), _tuple(s2)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _weights(G, d_in=D, bias=True):
    mk = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    return [mk(G * H, d_in), mk(G * H, H), mk(G * H) if bias else None, mk(G * H) if bias else None]


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_each_function(bias, loops):
    x = torch.randn(T, B, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    for relu in (False, True):
        assert torch.autograd.gradcheck(lambda *a: RNNTanhSequence.apply(*a, relu), (x, h0, *_weights(1, bias=bias)))
    assert torch.autograd.gradcheck(LSTMSequence.apply, (x, h0, c0, *_weights(4, bias=bias)))
    assert torch.autograd.gradcheck(GRUSequence.apply, (x, h0, *_weights(3, bias=bias)))


def test_kernel_dropout_between_layers_only_in_training():
    layer = unrolled.LSTM(D, H, 2, dropout=0.5, path="kernel").double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    layer.eval()
    ref = unrolled.LSTM(D, H, 2, dropout=0.5, path="readable").double().eval()
    ref.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=0, atol=1e-12)
    layer.train()
    torch.manual_seed(1)
    a = layer(x)[0]
    torch.manual_seed(2)
    assert not torch.equal(a, layer(x)[0])  # dropout is live between the layers


def test_kernel_path_with_lengths_falls_back_to_packing():
    layer = unrolled.GRU(D, H, path="kernel").double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([T, 1])
    out, h = layer(x, lengths=lengths)
    layer.path = "readable"
    ref_out, ref_h = layer(x, lengths=lengths)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embedding_size, batch, dtype", [(0, B, torch.float64), (4, B, torch.float64),
                                                          (4, 8, torch.float64), (4, 8, torch.float32)])
def test_stepper_equals_model(cell, embedding_size, batch, dtype, monkeypatch, loops):
    # batch 8 takes the packed products (oneDNN in float32), batch 2 the addmm into buffers
    monkeypatch.setattr(Product, "PACK_MIN", 1)  # pack even these tiny weights
    vocab = Vocabulary.from_text("abcdefg")
    assert len(vocab) == V
    model = unrolled.CharLM(vocab, ModelConfig(cell=cell, hidden_size=H, num_layers=2,
                                               embedding_size=embedding_size)).to(dtype).eval()
    tol = {"rtol": 0, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    idx = torch.randint(0, V, (batch, T))
    start = model.zero_state(batch)
    start = tuple(torch.randn_like(s) for s in start) if cell == "lstm" else torch.randn_like(start)
    ref, ref_state = model(idx, start)  # (batch, T, V)
    stepper = model.stepper(batch, start)
    assert stepper.cell is not None  # the preallocated step, not a step through the model
    for t in range(T):
        torch.testing.assert_close(stepper.logits(idx[:, t]), ref[:, t], **tol)
    for a, b in zip(_tuple(stepper.state), _tuple(ref_state)):
        torch.testing.assert_close(a, b, **tol)


def test_stepper_of_a_deep_layer_steps_through_the_model():
    vocab = Vocabulary.from_text("abcdefg")
    model = unrolled.CharLM(vocab, ModelConfig(cell="rnn", hidden_size=H, num_layers=2, embedding_size=D))
    model.rnn = unrolled.RNN(D, H, 2, input_depth=1)  # a deep input: no preallocated step for it
    model = model.double().eval()
    idx = torch.randint(0, V, (B, T))
    ref, ref_state = model(idx)  # (B, T, V)
    stepper = model.stepper(B)
    assert stepper.cell is None
    for t in range(T):
        torch.testing.assert_close(stepper.logits(idx[:, t]), ref[:, t], rtol=0, atol=1e-12)
    torch.testing.assert_close(stepper.state, ref_state, rtol=0, atol=1e-12)


def test_auto_path_picks_a_path_that_equals_readable():
    for kind in LAYERS:
        layer = LAYERS[kind](D, H, 2).double()
        assert layer.path == "auto"
        x = torch.randn(B, T, D, dtype=torch.float64)
        out = layer(x)[0]
        layer.path = "readable"
        torch.testing.assert_close(out, layer(x)[0], rtol=0, atol=1e-12)


def test_flops_per_char_counts_the_products():
    from unrolled.bench import flops_per_char
    # LSTM, D=4, H=5, 2 layers, V=7: layer 0 2*(4+5)*20, layer 1 2*(5+5)*20, head 2*5*7
    f = flops_per_char("lstm", H, 2, D, V)
    assert f["forward"] == 2 * 9 * 20 + 2 * 10 * 20 + 2 * 5 * 7
    assert f["train"] == 3 * f["forward"]


def test_bench_goals_read_the_result():
    from unrolled.bench import goals
    row = {"cell": "lstm", "hidden": 256, "layers": 2, "batch": 64, "seq": 100,
           "speedup": {"unrolled": 1.02}, "fraction_of_peak": {"unrolled": 0.7}}
    got = {g["goal"]: g["met"] for g in goals({"train": [row]})}
    assert got == {"train lstm 256x2 b64 t100: unrolled >= 1.0x torch": True,
                   "train lstm 256x2 b64 t100: >= 75% of the matmul peak": False}
    # at a thread count where auto runs torch's fused code, the default cannot be slower than torch.nn
    slow = dict(row, threads=2, auto="fast", speedup={"unrolled": 0.99})
    got = {g["goal"]: g["met"] for g in goals({"train": [slow, dict(slow, auto="kernel")]})}
    assert got == {"train lstm 256x2 b64 t100 at 2 threads: unrolled >= 1.0x torch": False,
                   "train lstm 256x2 b64 t100 at 2 threads: >= 75% of the matmul peak": False}
    assert [g["met"] for g in goals({"train": [slow]})] == [True, False]


def test_bench_command_runs_a_part_and_prints_json(capsys, monkeypatch):
    import unrolled.bench as bench
    monkeypatch.setattr(bench, "corpus_text", lambda max_chars=0: "to be or not to be\n" * 50)
    from unrolled.cli import main
    assert main(["bench", "--only", "sample", "--json", "--repeats", "1", "--threads", "1", "--quick"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["machine"]["threads"] == [1]
    assert [p["threads"] for p in result["matmul"]] == [1] and result["matmul"][0]["peak_gflops"] > 0
    assert [r["batch"] for r in result["sample"]] == [1, 64]
    assert {r["threads"] for r in result["sample"]} == {1}
    assert all(v > 0 for r in result["sample"] for v in r["chars_per_s"].values())


@pytest.mark.parametrize("argv, words", [
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--threads", "1,x"], "--threads"),
    (["bench", "--threads", "1,-2"], "--threads"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--bf16", "--device", "cpu"], "--bf16"),
    (["bench", "--device", "tpu9"], "--device"),
])
def test_bench_bad_flags_end_in_one_sentence(argv, words, capsys):
    from unrolled.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled: error: ") and words in err and "Traceback" not in err


@pytest.mark.parametrize("loops", ["native", "python"], indirect=True)
def test_auto_runs_our_kernel_only_where_the_benchmark_shows_a_win(monkeypatch, loops):
    calls = []
    real = sequence._apply  # one call per layer and direction of run_layers, whoever imported it
    monkeypatch.setattr(sequence, "_apply", lambda kind, *a: calls.append(kind) or real(kind, *a))

    def kernel_kinds(hidden, batch, steps, grad=True):
        calls.clear()
        x = torch.randn(batch, steps, D)
        with torch.set_grad_enabled(grad):
            for kind in LAYERS:
                LAYERS[kind](D, hidden)(x)
        return sorted(calls)

    if loops == "native":  # compiled: the RNN and the GRU everywhere they were measured
        assert kernel_kinds(H, 8, 16) == ["gru", "rnn"]
        assert kernel_kinds(512, 8, 16, grad=False) == ["gru", "rnn"]
        assert kernel_kinds(512, 1, 16) == ["rnn"]  # the GRU's forward tied at batch 1: fused
    else:  # Python loops: a training window for the RNN at any width, the GRU from H = 512
        assert kernel_kinds(H, 8, 16) == ["rnn"]
        assert kernel_kinds(256, 8, 16) == ["rnn"]
        assert kernel_kinds(512, 8, 16) == ["gru", "rnn"]
        assert kernel_kinds(512, 8, 16, grad=False) == ["rnn"]  # the GRU's forward alone: fused
        assert kernel_kinds(512, 1, 16) == []  # sampling-sized batches stay fused
    assert kernel_kinds(512, 8, 1) == []  # single steps stay fused
    assert "lstm" not in kernel_kinds(128, 64, 100)  # oneDNN's fused LSTM cell
    assert "lstm" not in kernel_kinds(256, 64, 100, grad=False)
    assert ("lstm" in kernel_kinds(256, 64, 100)) == (loops == "native")  # training from H = 256


@pytest.mark.parametrize("loops", ["native", "python"], indirect=True)
def test_auto_decides_by_thread_count_and_dtype(monkeypatch, loops):
    from unrolled.kernels import KERNEL_WINS, policy
    calls = []
    real = sequence._apply
    monkeypatch.setattr(sequence, "_apply", lambda kind, *a: calls.append(kind) or real(kind, *a))

    def kernel_kinds(threads, hidden, batch, steps, dtype=torch.float32):
        calls.clear()
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # what the policy reads
        x = torch.randn(batch, steps, D, dtype=dtype)
        for kind in LAYERS:
            LAYERS[kind](D, hidden).to(dtype)(x)
        return sorted(calls)

    # at a thread count no run measured, nothing but torch's own code
    assert max(key[4] for key in KERNEL_WINS) < 64 and kernel_kinds(64, H, 8, 16) == []
    assert kernel_kinds(1, H, 8, 16, torch.float64) == []  # float64 was not measured: fused
    if loops == "native":  # the LSTM's training at 256 only (it lost at 128 and 512), at 1 and 2 threads
        for threads in (1, 2):
            assert kernel_kinds(threads, 256, 64, 100) == ["gru", "lstm", "rnn"]
            assert kernel_kinds(threads, 512, 32, 50) == ["gru", "rnn"]
            assert kernel_kinds(threads, 128, 32, 100) == ["gru", "rnn"]
    else:  # the Python loops were measured at one thread only
        assert kernel_kinds(1, H, 8, 16) == ["rnn"] and kernel_kinds(2, H, 8, 16) == []
    # every row is one measured case: a thread count, float32, a CPU
    assert all(key[1:3] == ("cpu", "float32") and key[4] >= 1 for key in KERNEL_WINS)
    assert policy.rule_for("lstm", torch.zeros(1, 1, 1, device="meta")) is None


def test_tanh_as_sigmoid_equals_tanh():
    x = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    torch.testing.assert_close(tanh_into(x, torch.empty_like(x)), torch.tanh(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(tanh_(x.clone()), torch.tanh(x), rtol=0, atol=1e-15)
    x32 = x.float()
    torch.testing.assert_close(tanh_(x32.clone()), torch.tanh(x32), rtol=0, atol=3e-7)


@pytest.mark.parametrize("case", CASES)
def test_kernel_path_float32_equals_readable(case, monkeypatch, loops):
    # float32 on a CPU takes the oneDNN products (kernels.Product); float64 above takes addmm
    monkeypatch.setattr(Product, "PACK_MIN", 1)  # pack even these tiny weights
    kind, kw = CASES[case]
    layer = LAYERS[kind](D, H, 2, **kw)
    x = torch.randn(B, T, D, requires_grad=True)
    dy = torch.randn(B, T, H)
    got = {}
    for path in ("readable", "kernel"):
        layer.path = path
        out, _ = layer(x)
        got[path] = (out, torch.autograd.grad((out * dy).sum(), [x, *layer.parameters()]))
    torch.testing.assert_close(got["kernel"][0], got["readable"][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(got["kernel"][1], got["readable"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_kernel_bias_gradients_do_not_share_storage(kind):
    # in-place clipping scales every .grad once; two that shared storage would be scaled twice
    layer = LAYERS[kind](D, H, path="kernel")
    layer(torch.randn(B, T, D))[0].sum().backward()
    assert layer.bias_ih_l0.grad.data_ptr() != layer.bias_hh_l0.grad.data_ptr()


def test_bench_train_part_measures_every_contender(capsys, monkeypatch):
    import unrolled.bench as bench
    monkeypatch.setattr(bench, "corpus_text", lambda max_chars=0: "to be or not to be\n" * 50)
    monkeypatch.setattr(bench, "SHAPES", [(H, 2, B, T)])
    monkeypatch.setattr(bench, "CELLS", ("rnn", "gru"))
    from unrolled.cli import main
    before = torch.get_num_threads()
    assert main(["bench", "--only", "train", "--json", "--repeats", "1", "--threads", "1,2", "--quick"]) == 0
    assert torch.get_num_threads() == before  # the run puts torch's thread count back
    result = json.loads(capsys.readouterr().out)
    assert result["machine"]["threads"] == [1, 2]
    # one row per shape, cell and thread count, the thread counts of a cell back to back
    assert [(r["cell"], r["threads"]) for r in result["train"]] == [("rnn", 1), ("rnn", 2), ("gru", 1), ("gru", 2)]
    for row in result["train"]:
        assert set(row["chars_per_s"]) == set(bench.CONTENDERS)
        assert row["peak_gflops"] > 0 and row["speedup"]["torch"] == 1.0
        assert all(0 < f for f in row["fraction_of_peak"].values())
        assert row["auto"] in ("kernel", "fast")
    assert {g["goal"].split(":")[0] for g in result["goals"]} == {
        f"train {c} {H}x2 b{B} t{T} at {n} thread{'s' if n > 1 else ''}" for c in ("rnn", "gru") for n in (1, 2)}
    assert "| rnn | 2 |" in bench.table(result)


def test_bench_threads_default_to_one_and_the_machines(monkeypatch):
    from unrolled.bench import settings
    assert settings(threads="2,1,2").thread_counts == (2, 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert settings().thread_counts == (1, 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert settings().thread_counts == (1,)
