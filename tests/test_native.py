"""The compiled step loops' loader (unrolled.kernels.native): it builds once, and when it cannot
build it says why in one line and the Python loops run instead."""
import shutil

import torch

import unrolled
from unrolled.kernels import native
from conftest import B, D, H, T


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
