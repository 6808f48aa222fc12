"""The compiled step loops' loader (unrolled.kernels.native): it builds once, and when it cannot
build it says why in one line and the Python loops run instead; its parallel loops equal its serial ones."""
import shutil

import pytest
import torch

import unrolled
from unrolled.kernels import native
from conftest import B, D, H, T
from compiled_loops import compiled_or_skip


def test_a_build_failure_falls_back_to_the_python_loops_with_one_line(monkeypatch):
    from torch.utils import cpp_extension

    def fail(**kwargs):
        raise RuntimeError("Error building extension 'x'\nc++: fatal error: no input files\nmore")

    monkeypatch.delenv("UNROLLED_NATIVE", raising=False)  # a build is tried even in a run without them
    monkeypatch.setattr(cpp_extension, "load", fail)
    monkeypatch.setattr(native, "_ninja_on_path", lambda: None)
    monkeypatch.setattr(native, "_name", lambda: "unrolled_native_never_built")
    monkeypatch.setattr(native, "_already_loaded", lambda: False)
    ops, why = native._load()
    assert ops is None
    assert "\n" not in why and "could not be built" in why and "Error building extension" in why
    # and the kernels still run (in Python) when the loader has given up
    monkeypatch.setitem(native._STATE, "tried", True)
    monkeypatch.setitem(native._STATE, "ops", None)
    layer = unrolled.LSTM(D, H, path="kernel").double()
    ref = unrolled.LSTM(D, H, path="readable").double()
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=0, atol=1e-12)


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("UNROLLED_NATIVE", "0")
    assert not native.enabled()
    ops, why = native._load()
    assert ops is None and "UNROLLED_NATIVE=0" in why


def test_the_build_is_keyed_by_source_flags_torch_and_cpu(monkeypatch):
    name = native._name()
    assert name.startswith("unrolled_native_") and name == native._name()
    monkeypatch.setattr(native, "_flags", lambda: ["-O2"])
    assert native._name() != name


def test_the_build_is_keyed_by_the_headers_too(monkeypatch, tmp_path):
    csrc = tmp_path / "csrc"
    shutil.copytree(native.SOURCE.parent, csrc)
    monkeypatch.setattr(native, "SOURCE", csrc / native.SOURCE.name)
    name = native._name()
    for header in native.HEADERS:
        (csrc / header).write_text((csrc / header).read_text() + "\n// changed\n")
        assert native._name() != name
        name = native._name()


def test_the_old_module_name_is_the_same_module():
    import unrolled.kernels.native as old  # the shim kept while other modules still import the old name
    assert old is native


def _forward_backward(layer, x, dy):
    """Output, final state and every gradient of the kernel path, forward and backward."""
    out, state = layer(x)
    grads = torch.autograd.grad((out * dy).sum(), [x, *layer.parameters()])
    return [out, *(state if isinstance(state, tuple) else (state,)), *grads]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_parallel_step_loops_equal_the_serial_ones(case, dtype, threads, monkeypatch):
    # B = 3 rows over up to 3 threads, H = 5: the default grain runs these serially, grain 1 forces
    # every step's element-wise loops onto ATen's pool, one row a task; the products are the same
    compiled_or_skip()
    from unrolled.recurrent import LAYERS
    kind, kw = case.split("_")[0], ({"nonlinearity": case.split("_")[1]} if "_" in case else {})
    torch.manual_seed(0)
    layer = LAYERS[kind](D, 5, 2, path="kernel", **kw).to(dtype)
    x = torch.randn(3, 9, D, dtype=dtype, requires_grad=True)
    dy = torch.randn(3, 9, 5, dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.delenv("UNROLLED_NATIVE_GRAIN", raising=False)
        serial = _forward_backward(layer, x, dy)
        monkeypatch.setenv("UNROLLED_NATIVE_GRAIN", "1")  # read by the C++ loops at each call
        parallel = _forward_backward(layer, x, dy)
        pre, c = torch.randn(3, 20, dtype=dtype), torch.randn(3, 5, dtype=dtype)  # one generation step
        steps = []
        for grain in (None, "1"):
            if grain is None:
                monkeypatch.delenv("UNROLLED_NATIVE_GRAIN")
            else:
                monkeypatch.setenv("UNROLLED_NATIVE_GRAIN", grain)
            p, cc, h = pre.clone(), c.clone(), torch.empty(3, 5, dtype=dtype)
            native.ops().lstm_step(p, cc, h)
            steps.append([p, cc, h])
    finally:
        torch.set_num_threads(before)
    tol = {"rtol": 0, "atol": 0} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    for a, b in zip(serial + steps[0], parallel + steps[1]):
        torch.testing.assert_close(b, a, **tol)
