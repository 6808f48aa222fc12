"""The compiled step loops of our sequence kernels (`csrc/steps.cpp`, and `csrc/minimal.cpp` for the
minimal cells' recurrence), built on first use.

`kernels.sequence` does the large matrix products in PyTorch; the loop over time, with one
recurrent product and the element-wise math of each step, runs in C++ when this module can
build it, and in Python otherwise (the same arithmetic; tests/test_kernels.py checks both
against the readable loop).

The cache. The library lives in one folder per build, `build_folder()`:
`<root>/<name>/<name>.so`, where root is `TORCH_EXTENSIONS_DIR` or else torch's default
extension root (`~/.cache/torch_extensions/py311_cpu` and the like), and name is
`unrolled_native_` + a hash of the source text (`csrc/steps.cpp`, `MORE_SOURCES`, the `HEADERS`),
the compiler flags, torch's version, Python's version, the CPU's flags and the environment
(`sys.prefix`). Two environments, or two checkouts with different sources, never share a
folder, so they never rebuild each other's. The folder only ever holds a complete library: a
build runs in a private temporary folder inside it (`build-*`, through
`torch.utils.cpp_extension.load`) and the finished `.so` is moved into place with `os.replace`.
Loading a finished one is `torch.ops.load_library` and nothing else (silent, no lock, no torch
"baton").

The lock. Only a process that finds no library builds, and only while it holds an OS lock
(`fcntl.flock`) on `<folder>/build.lock`, with its pid written in the file. The lock dies with
its owner, so a build killed with SIGKILL blocks nobody; the next builder removes what it left
(`build-*` folders, a stale torch `lock` file) before it starts. A process that finds the lock
held says so on stderr at once (naming the pid), polls, and after `UNROLLED_NATIVE_WAIT`
seconds gives up: the Python loops run and `reason()` names the pid and the lock file. Every
real build says so on stderr ("compiling ..."); it takes about half a minute and needs a C++
compiler and `ninja`.

    UNROLLED_NATIVE=0            never build or load it: the Python loops run (as without a compiler)
    UNROLLED_NATIVE_WAIT=<s>     how long to wait for another process's build (default 300 s)
    TORCH_EXTENSIONS_DIR=<dir>   where the cache folders live (torch's own variable)
    UNROLLED_NATIVE_GRAIN=<n>    hidden units per parallel task of a step's element-wise loops
                                 (default 4096: smaller steps run serially; read at each call)

`ops()` is the loaded library (`torch.ops.unrolled_native`) or None; `reason()` says why not;
`ops_for(x)` is what a kernel asks: the library, if it loaded and applies to the tensor x.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: no lock, but the private build folder and the atomic move still
    fcntl = None     # keep the cache whole (two builders at once only cost time)

SOURCE = Path(__file__).with_name("csrc") / "steps.cpp"
MORE_SOURCES = ("minimal.cpp",)  # in csrc/, built into the same library (the minimal cells' recurrence)
HEADERS = ("activations.h", "products.h")  # in csrc/, included by the sources: part of the cache key
WAIT_DEFAULT = 300.0  # seconds to wait for another process's build (UNROLLED_NATIVE_WAIT)
POLL = 0.5            # seconds between tries of a held lock
LOCK_FILE = "build.lock"
TEMP_PREFIX = "build-"
_SUFFIX = ".pyd" if sys.platform == "win32" else ".so"
_LOCK = threading.Lock()
_STATE: dict = {"tried": False, "ops": None, "reason": "not built yet"}


def _openmp() -> list[str]:
    """-fopenmp where torch computes with OpenMP on Linux: ATen's at::parallel_for, which the step
    loops split their rows with, is an inline `#pragma omp parallel` that runs serially without it.
    The library then needs libgomp.so.1, the one torch has already loaded (one thread pool)."""
    return ["-fopenmp"] if sys.platform.startswith("linux") and torch.backends.openmp.is_available() else []


def _flags() -> list[str]:
    # -march=native: the vector width of this CPU for the exponential (the build is cached per
    # CPU, see _name); on other architectures the compiler's defaults.
    if platform.machine().lower() in ("x86_64", "amd64"):
        return ["-O3", "-march=native", *_openmp()]
    return ["-O3", *_openmp()]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sources() -> list[Path]:
    """steps.cpp and the MORE_SOURCES beside it, compiled into one library."""
    return [SOURCE, *(SOURCE.parent / name for name in MORE_SOURCES)]


def _name() -> str:
    texts = [p.read_text() for p in _sources()] + [(SOURCE.parent / h).read_text() for h in HEADERS]
    key = "\n".join([*texts, " ".join(_flags()), torch.__version__,
                     sys.version, _cpu(), sys.prefix])
    return "unrolled_native_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _root() -> Path:
    """TORCH_EXTENSIONS_DIR, else the root torch's extension builder uses by default."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    from torch.utils import cpp_extension
    if torch.version.hip is not None:
        device = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        device = "cu" + torch.version.cuda.replace(".", "")
    else:
        device = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path(cpp_extension.get_default_build_root()) / f"{python}_{device}"


def build_folder() -> Path:
    """This environment's cache folder of the step kernels (it may not exist yet)."""
    return _root() / _name()


def library_path() -> Path:
    """Where this environment's finished library is (or will be)."""
    name = _name()
    return _root() / name / (name + _SUFFIX)


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


def ops_for(x: torch.Tensor):
    """The compiled step loops for a float CPU tensor x, else None (the Python loops run: other
    dtypes, CUDA, UNROLLED_NATIVE=0, or no C++ compiler)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return ops()


def reason() -> str:
    """Why `ops()` is None ("" when it is loaded)."""
    return "" if _STATE["ops"] is not None else _STATE["reason"]


def _already_loaded() -> bool:
    """Whether this process has the library already (loaded by another copy of this module)."""
    return hasattr(torch.ops.unrolled_native, "lstm_forward")


class _Busy(Exception):
    """Another process held the build lock for longer than we wait."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _load():
    if not enabled():
        return None, "switched off by UNROLLED_NATIVE=0"
    if _already_loaded():
        return torch.ops.unrolled_native, ""
    try:
        name = _name()
        folder = _root() / name
        library = folder / (name + _SUFFIX)
        if not library.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with _build_lock(folder / LOCK_FILE):
                if not library.exists():  # nobody built it while we waited
                    _clean(folder)
                    _build(name, folder, library)
                    return torch.ops.unrolled_native, ""
    except _Busy as exc:
        return None, str(exc)
    except Exception as exc:  # no compiler, no ninja, a read-only cache: the Python loops run
        return None, f"the C++ step kernels could not be built ({_first_line(exc)}); the Python loops run"
    try:
        torch.ops.load_library(str(library))
        return torch.ops.unrolled_native, ""
    except Exception as exc:
        return None, (f"the C++ step kernels in {library} could not be loaded ({_first_line(exc)}; "
                      f"delete {folder} to rebuild them); the Python loops run")


def _build(name: str, folder: Path, library: Path) -> None:
    """Compile into a private temporary folder (loading the result), then move the finished
    library into place in one step, so the cache never holds a partial one."""
    from torch.utils import cpp_extension
    _ninja_on_path()
    print("unrolled: compiling the CPU step kernels for this environment (once, about half a minute)...",
          file=sys.stderr, flush=True)
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder))
    try:
        built = cpp_extension.load(name=name, sources=[str(p) for p in _sources()], extra_cflags=_flags(),
                                   extra_ldflags=_openmp(),
                                   build_directory=str(temp), is_python_module=False, verbose=False)
        os.replace(built if isinstance(built, str) else temp / (name + _SUFFIX), library)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _clean(folder: Path) -> None:
    """Remove what killed builds left (called holding the lock, so no build of ours is live)."""
    for entry in folder.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
    with contextlib.suppress(OSError):
        (folder / "lock").unlink()  # torch's FileBaton, as a build through torch's folder left it


def _wait_limit() -> float:
    text = os.environ.get("UNROLLED_NATIVE_WAIT", "").strip()
    try:
        return max(0.0, float(text)) if text else WAIT_DEFAULT
    except ValueError:
        return WAIT_DEFAULT


def _try_flock(fd: int) -> bool:
    """Take the lock without waiting: True when taken, False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _holder(path: Path) -> str:
    """The pid the lock's holder wrote into it ("unknown" when it has not yet)."""
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    return "unknown"


@contextlib.contextmanager
def _build_lock(path: Path):
    """Hold the flock on `path` (with our pid in it); wait for another holder up to
    UNROLLED_NATIVE_WAIT seconds, saying so on stderr, then raise _Busy."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            taken = _try_flock(fd)
        except OSError:  # a file system without locks: build unlocked (the move keeps it whole)
            yield
            return
        if not taken:
            _wait(fd, path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock (as the owner's death does)


def _wait(fd: int, path: Path) -> None:
    limit = _wait_limit()
    print(f"unrolled: waiting for another process compiling the step kernels (pid {_holder(path)}, "
          f"lock file {path}; at most {limit:g} s, UNROLLED_NATIVE_WAIT)...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Busy(f"another process (pid {_holder(path)}) held the lock file {path} for over "
                        f"{limit:g} s while compiling the step kernels (UNROLLED_NATIVE_WAIT); "
                        "the Python loops run")
        time.sleep(min(POLL, left))
        if _try_flock(fd):
            return
