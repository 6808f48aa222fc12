"""The compiled step loops of our sequence kernels (`csrc/steps.cpp`), built on first use.

`unrolled.kernels` does the large matrix products in PyTorch; the loop over time, with one
recurrent product and the element-wise math of each step, runs in C++ when this module can
build it, and in Python otherwise (the same arithmetic; tests/test_kernels.py checks both
against the readable loop). PyTorch's own extension builder compiles the file the first time a
process needs it (about half a minute, a C++ compiler required) and caches the result, keyed by
the source, the compiler flags, torch's version and the CPU, in torch's extension folder
(`TORCH_EXTENSIONS_DIR`, by default under the user's cache folder).

    UNROLLED_NATIVE=0   never build or load it: the Python loops run (as without a compiler)

`ops()` is the loaded library (`torch.ops.unrolled_native`) or None; `reason()` says why not.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "steps.cpp"
_LOCK = threading.Lock()
_STATE: dict = {"tried": False, "ops": None, "reason": "not built yet"}


def _flags() -> list[str]:
    # -march=native: the vector width of this CPU for the exponential (the build is cached per
    # CPU, see _name); on other architectures the compiler's defaults.
    if platform.machine().lower() in ("x86_64", "amd64"):
        return ["-O3", "-march=native"]
    return ["-O3"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _name() -> str:
    key = "\n".join([SOURCE.read_text(), " ".join(_flags()), torch.__version__, _cpu()])
    return "unrolled_native_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _ninja_on_path() -> None:
    """torch builds with the `ninja` program; the ninja package's copy sits in its own folder (or
    an environment's bin, not on PATH unless the environment is activated)."""
    try:
        import ninja
        folders = [ninja.BIN_DIR]
    except (ImportError, AttributeError):
        folders = []
    folders.append(str(Path(sys.executable).parent))
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([f for f in folders if f not in path] + path)


def enabled() -> bool:
    return os.environ.get("UNROLLED_NATIVE", "1") != "0"


def ops():
    """torch.ops.unrolled_native, built and loaded the first time it is asked for; None when it
    is switched off or cannot be built (then the Python loops run)."""
    if _STATE["tried"]:
        return _STATE["ops"]
    with _LOCK:
        if not _STATE["tried"]:
            _STATE["ops"], _STATE["reason"] = _load()
            _STATE["tried"] = True
    return _STATE["ops"]


def reason() -> str:
    """Why `ops()` is None ("" when it is loaded)."""
    return "" if _STATE["ops"] is not None else _STATE["reason"]


def _already_loaded() -> bool:
    """Whether this process has the library already (loaded by another copy of this module)."""
    return hasattr(torch.ops.unrolled_native, "lstm_forward")


def _load():
    if not enabled():
        return None, "switched off by UNROLLED_NATIVE=0"
    if _already_loaded():
        return torch.ops.unrolled_native, ""
    try:
        from torch.utils import cpp_extension
        _ninja_on_path()
        name = _name()
        built = Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so"
        if not built.exists():
            print("unrolled: compiling the CPU step kernels (once per machine, about half a minute)",
                  file=sys.stderr, flush=True)
        cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=_flags(),
                           is_python_module=False, verbose=False)
        return torch.ops.unrolled_native, ""
    except Exception as exc:  # no compiler, no ninja, a read-only cache: the Python loops run
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"the C++ step kernels could not be built ({first[:200]}); the Python loops run"
