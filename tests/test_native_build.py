"""The build of the compiled step loops (unrolled.kernels.native) under real conditions: a compile
killed with SIGKILL blocks no one, a held lock is waited for (saying so) and then given up on, a cached
build loads silently, and two environments never share a build folder. Every test runs real
Python processes in a private TORCH_EXTENSIONS_DIR, so the shared cache is never touched."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from unrolled.kernels import native

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None,
    reason="no C++ compiler here: nothing is built, only the Python loops run")
needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="the build lock is POSIX flock")

# What a user's process does: ask for the kernels and report whether they loaded.
PROBE = """
import sys
from unrolled.kernels import native
print("ASKING", file=sys.stderr, flush=True)
ops = native.ops()
print("LOADED" if ops is not None else "FALLBACK " + native.reason(), flush=True)
"""
BUILD_TIMEOUT = 180  # seconds a real build may take on a busy machine


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("UNROLLED_NATIVE", "UNROLLED_NATIVE_WAIT")}
    env.update(TORCH_EXTENSIONS_DIR=str(root), **extra)
    return env


def _probe(env: dict, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _folder(env: dict, python: str = sys.executable) -> Path:
    out = subprocess.run([python, "-c", "from unrolled.kernels import native; print(native.build_folder())"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return Path(out.stdout.strip())


def _session_children(sid: int) -> list[str]:
    """The command names of the processes in session `sid` other than its leader (Linux /proc)."""
    names = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if int(rest[3]) == sid and int(stat.parent.name) != sid:
            names.append(comm)
    return names


def _wait_until_compiling(victim: subprocess.Popen, folder: Path, timeout: float = 120) -> str:
    """Block until the victim's build has really started: its private build folder has torch's
    ninja file and (where /proc shows it) a compiler or ninja runs in its session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if victim.poll() is not None:
            pytest.fail(f"the process to kill ended by itself (rc {victim.returncode}) before compiling")
        ninja_files = list(folder.glob(native.TEMP_PREFIX + "*/build.ninja")) if folder.exists() else []
        if ninja_files:
            if not Path("/proc/self/stat").exists():
                time.sleep(1.0)
                return "build.ninja written"
            children = _session_children(victim.pid)
            if any(c in ("ninja", "cc1plus", "c++", "g++", "clang++", "clang", "ld", "as") for c in children):
                return "running: " + ", ".join(sorted(set(children)))
        time.sleep(0.1)
    pytest.fail(f"the build did not start within {timeout} s")


@pytest.fixture(scope="module")
def killed_then_rebuilt(tmp_path_factory):
    """A compile killed with SIGKILL mid-build, a stale torch `lock` file planted in the cache
    folder (as a torch-baton build leaves it), then a second process in the same cache."""
    root = tmp_path_factory.mktemp("extensions")
    env = _env(root)
    folder = _folder(env)
    victim = subprocess.Popen([sys.executable, "-c", PROBE], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = _wait_until_compiling(victim, folder)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    left = sorted(p.name for p in folder.iterdir())
    (folder / "lock").write_text("")  # torch's FileBaton file: it waits on it for as long as it exists
    t = time.monotonic()
    second = _probe(env)
    return {"env": env, "folder": folder, "started": started, "left": left, "second": second,
            "seconds": time.monotonic() - t}


@needs_compiler
def test_a_compile_killed_with_sigkill_blocks_no_one(killed_then_rebuilt):
    r = killed_then_rebuilt
    folder, second = r["folder"], r["second"]
    assert any(n.startswith(native.TEMP_PREFIX) for n in r["left"]), r["left"]  # the kill left a partial build
    assert not any(n.endswith(".so") for n in r["left"]), r["left"]  # and no library in the cache
    assert second.returncode == 0, second.stderr
    assert "LOADED" in second.stdout, second.stdout + second.stderr
    assert "compiling the CPU step kernels" in second.stderr
    assert "waiting" not in second.stderr  # the dead process's lock did not hold it up
    left_after = sorted(p.name for p in folder.iterdir())
    assert left_after == sorted([native.LOCK_FILE, folder.name + ".so"]), left_after  # cleaned up
    print(f"killed while {r['started']}; rebuilt in {r['seconds']:.1f} s")


@needs_compiler
def test_a_cached_build_loads_silently_without_rebuilding(killed_then_rebuilt):
    folder = killed_then_rebuilt["folder"]
    library = folder / (folder.name + ".so")
    before = library.stat()
    again = _probe(killed_then_rebuilt["env"], timeout=120)
    assert again.returncode == 0 and "LOADED" in again.stdout, again.stdout + again.stderr
    assert "unrolled:" not in again.stderr, again.stderr  # no "compiling", no "waiting": nothing said
    after = library.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rebuilt


class _Stderr(threading.Thread):
    """Collects a process's stderr lines with the time each arrived."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []

    def run(self):
        for line in self.stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, text):
        return next(((t, line) for t, line in self.lines if text in line), (None, None))


def _hold_the_lock(folder: Path) -> int:
    """Hold the build lock as the module's own builder does: flock on build.lock, our pid in it."""
    import fcntl
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / native.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _waiter(env: dict):
    proc = subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err = _Stderr(proc.stderr)
    err.start()
    return proc, err


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Wait for the process (killing it past `timeout`) and return its stdout (its stderr is
    the _Stderr thread's)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the process did not end within {timeout} s: it hangs")
    return proc.stdout.read()


@needs_flock
def test_a_held_lock_is_announced_then_given_up_on(tmp_path):
    env = _env(tmp_path / "extensions", UNROLLED_NATIVE_WAIT="3")
    folder = _folder(env)
    fd = _hold_the_lock(folder)
    try:
        proc, err = _waiter(env)
        out = _finish(proc)  # a hang fails here
        ended = time.monotonic()
        err.join(timeout=10)
    finally:
        os.close(fd)
    lock = folder / native.LOCK_FILE
    stderr = "\n".join(line for _, line in err.lines)
    asked, _ = err.first("ASKING")
    waited, line = err.first("waiting for another process compiling the step kernels")
    assert asked is not None and waited is not None, stderr
    assert waited - asked < 5, stderr  # said within 5 s of asking
    assert f"pid {os.getpid()}" in line, line
    assert ended - waited > 2.5, stderr  # it did wait (UNROLLED_NATIVE_WAIT=3) before giving up
    assert proc.returncode == 0, stderr
    assert out.startswith("FALLBACK "), out
    why = out[len("FALLBACK "):].strip()
    assert "\n" not in why and str(os.getpid()) in why and str(lock) in why, why
    assert "compiling the CPU" not in stderr  # it never built behind the holder's back
    assert not any(folder.glob("*.so"))


@needs_flock
@needs_compiler
def test_a_waiter_loads_what_the_lock_holder_built(tmp_path, killed_then_rebuilt):
    env = _env(tmp_path / "extensions", UNROLLED_NATIVE_WAIT="120")
    folder = _folder(env)
    assert folder.name == killed_then_rebuilt["folder"].name  # the same key, another cache root
    fd = _hold_the_lock(folder)
    try:
        proc, err = _waiter(env)
        deadline = time.monotonic() + 60
        while err.first("waiting for another process")[0] is None and time.monotonic() < deadline:
            assert proc.poll() is None, "\n".join(line for _, line in err.lines)
            time.sleep(0.1)
        # finish "our build" as the module does: a complete library moved into place, then release
        built = tmp_path / "built.so"
        shutil.copyfile(killed_then_rebuilt["folder"] / (folder.name + ".so"), built)
        os.replace(built, folder / (folder.name + ".so"))
    finally:
        os.close(fd)
    out = _finish(proc)
    err.join(timeout=10)
    stderr = "\n".join(line for _, line in err.lines)
    assert err.first("waiting for another process")[0] is not None, stderr
    assert proc.returncode == 0 and out.startswith("LOADED"), out + stderr
    assert "compiling the CPU" not in stderr  # it took the holder's library, no second build


def test_two_environments_never_share_a_build_folder(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    # The new environment sees this one's packages (torch, this checkout of unrolled) even when
    # this one is itself a virtual environment, whose packages --system-site-packages would miss.
    env = {**_env(tmp_path / "extensions"), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    show = ("import sys, torch, unrolled; from unrolled.kernels import native; "
            "print(sys.prefix); print(torch.__version__); print(unrolled.__file__); print(native.build_folder())")
    ours, theirs = [subprocess.run([p, "-c", show], env=env, capture_output=True, text=True, timeout=120,
                                   check=True).stdout.splitlines() for p in (sys.executable, str(python))]
    assert Path(theirs[0]).resolve() == venv.resolve() and ours[0] != theirs[0]  # two environments
    assert ours[1:3] == theirs[1:3]  # the same torch and the same unrolled source
    assert ours[3] != theirs[3]  # but their own build folders
    assert Path(ours[3]).parent == Path(theirs[3]).parent == tmp_path / "extensions"
