"""What a new user meets first: Ctrl-C, closed pipes, the hints in error messages, the thread default.

Each test feeds the real thing: a real `unrolled` process sent real SIGINTs, a real closed pipe,
the real error messages of every command that reads text, real busy processes on every core.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_cli_docs import PARSERS
from unrolled import cli, threads

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "linux-lstm-2x128"  # a character model whose vocabulary is ASCII C
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _unrolled(*args: str) -> list[str]:
    return [sys.executable, "-m", "unrolled", *args]


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put((time.monotonic(), line))


def _wait_for(lines: queue.Queue, pattern: str, timeout: float) -> tuple[float, str]:
    """The first line matching `pattern` within `timeout` seconds, with the time it arrived."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            at, line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if re.search(pattern, line):
            return at, line
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; saw: {''.join(seen)[-2000:]}")


def _start_training(tmp_path: Path) -> tuple[subprocess.Popen, queue.Queue, Path]:
    """A real `unrolled train` on a small text, long enough that only Ctrl-C ends it, with a
    validation split large enough that scoring it takes a few seconds."""
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(40000)))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _unrolled("train", str(text), "--out", str(run), "--hidden-size", "16", "--num-layers", "1",
                  "--val-fraction", "0.5", "--test-fraction", "0.01",
                  "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16", "--max-minutes", "10",
                  "--eval-every", "100000", "--device", "cpu", "--threads", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    _wait_for(lines, r"^settings: ", 120)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline, "the run never logged a training row"
        time.sleep(0.05)  # the first row is written after 10 updates: the loop is running
    return proc, lines, run


def test_ctrl_c_says_at_once_what_happens_then_saves_scores_and_exits_130(tmp_path):
    proc, lines, run = _start_training(tmp_path)
    try:
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        at, line = _wait_for(lines, r"stopping", 5)
        assert at - sent < 5, f"the first line after Ctrl-C came {at - sent:.1f} s later"
        assert "saving the last checkpoint" in line and "Ctrl-C again" in line
        _wait_for(lines, r"scoring .* validation", 60)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
    assert (run / "last" / "state.json").is_file()
    out = subprocess.run(_unrolled("train", "--resume", str(run), "--max-steps", "1000000", "--max-minutes", "0.02",
                                   "--quiet"), capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("second", ["50 ms later", "while it scores"])
def test_ctrl_c_twice_in_a_row_still_saves_a_run_that_resumes(tmp_path, second):
    proc, lines, run = _start_training(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        if second == "50 ms later":
            time.sleep(0.05)
        else:
            _wait_for(lines, r"scoring .* validation", 60)
            started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        if second == "while it scores":
            assert time.monotonic() - started < 5, "the second Ctrl-C did not cut the scoring short"
    finally:
        proc.kill()
    rest = []
    while not lines.empty():
        rest.append(lines.get()[1])
    output = "".join(rest)
    assert "Traceback" not in output, output
    assert "skip" in output and "val -" in output, output  # the scoring was skipped, and said so
    assert "continue with: unrolled train --resume" in output, output
    assert (run / "last" / "state.json").is_file(), output
    out = subprocess.run(_unrolled("train", "--resume", str(run), "--max-minutes", "0.02", "--quiet"),
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr


def test_a_closed_pipe_ends_the_command_quietly():
    # The reading end is closed before the command writes anything: every write meets EPIPE.
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(_unrolled("inspect", str(MODEL)), stdout=write, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=120)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)


def test_sample_into_head_exits_quietly():
    # What a user types: a long sample into `head`, which exits after its first lines.
    cmd = " ".join(_unrolled("sample", str(MODEL), "--length", "200000", "--seed", "1"))
    proc = subprocess.run(["bash", "-c", f"{cmd} | head -c 200 >/dev/null; echo \"status ${{PIPESTATUS[0]}}\" >&2"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    status = re.search(r"status (\d+)", proc.stderr)
    assert status and int(status.group(1)) in (0, 141), proc.stderr
    assert "error" not in proc.stderr and "Broken pipe" not in proc.stderr, proc.stderr


def _cases(tmp_path: Path) -> list[list[str]]:
    """Bad inputs of every command that reads a text, each ending in a message with a hint."""
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\x7fELF\x00\x01\x02" * 50)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 na\xefve\n".encode("latin-1") * 50)
    snowman = tmp_path / "snowman.c"
    snowman.write_text("int main(void) { /* naïve ☃ */ return 0; }\n" * 200, encoding="utf-8")
    m = str(MODEL)
    cases = [["sample", m, "--prime", "naïve ☃", "--length", "5"],
             ["sample", m, "--prime-file", str(binary), "--length", "5"],
             ["train", str(binary), "--max-steps", "1"], ["train", str(latin1), "--max-steps", "1"],
             ["prepare", str(binary), "--out", str(tmp_path / "prepared")],
             ["train", str(snowman), "--init-from", m, "--max-steps", "1", "--out", str(tmp_path / "ft")]]
    for command in ("eval", "cells", "saturation", "match"):
        extra = ["--span", "1:5"] if command == "match" else []
        for f in (binary, latin1, snowman):
            cases.append([command, m, str(f), *extra])
    cases += [["ngram", str(f), "--model", m] for f in (binary, latin1, snowman)]
    return cases


def test_every_flag_a_hint_names_exists_on_that_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = 0
    for argv in _cases(tmp_path):
        code = cli.main(argv)
        out = capsys.readouterr()
        assert code == 2, (argv, out.err)
        message = out.err.strip()
        assert message.startswith("unrolled: error: ") and "\n" not in message, (argv, out.err)
        assert "seed:" not in out.err + out.out, (argv, "a seed was printed before the error")
        known = {s for a in PARSERS[argv[0]]._actions for s in a.option_strings}
        flags = set(FLAG.findall(message))
        assert flags <= known, f"`unrolled {argv[0]}` was told to use {sorted(flags - known)}: {message}"
        named += bool(flags)
    assert named >= 10  # the hints do name flags: the test checks something


def test_the_unknown_flag_works_where_its_hint_appears(tmp_path, capsys):
    snowman = tmp_path / "snowman.c"
    snowman.write_text("int main(void) { /* naïve ☃ */ return 0; }\n" * 200, encoding="utf-8")
    assert cli.main(["sample", str(MODEL), "--prime", "naïve ☃", "--unknown", "skip", "--length", "3",
                     "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("nave ")  # the two unseen characters dropped
    assert cli.main(["eval", str(MODEL), str(snowman), "--unknown", "replace", "--json"]) == 0
    assert cli.main(["saturation", str(MODEL), str(snowman), "--unknown", "skip", "--png", "",
                     "--json"]) == 0


def test_serve_takes_the_text_positionally(tmp_path, monkeypatch):
    import unrolled.web.server as server
    calls = []
    monkeypatch.setattr(server, "serve", lambda checkpoint, **kw: calls.append((checkpoint, kw)))
    text = tmp_path / "t.c"
    text.write_text("int x;\n")
    assert cli.main(["serve", str(MODEL), str(text), "--port", "0"]) == 0
    assert calls[-1][1]["text"] == str(text)
    assert cli.main(["serve", str(MODEL), "--text", str(text)]) == 0
    assert calls[-1][1]["text"] == str(text)
    assert cli.main(["serve", str(MODEL), str(text), "--text", str(tmp_path / "other.c")]) == 2


def test_the_settings_line_names_only_what_differs(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("abc def ghi\n" * 400)
    assert cli.main(["train", str(text), "--out", str(tmp_path / "r"), "--hidden-size", "8", "--num-layers", "1",
                     "--max-steps", "2", "--batch-size", "2", "--seq-len", "8"]) == 0
    out = capsys.readouterr().out
    settings = [line for line in out.splitlines() if line.startswith("settings: ")]
    assert len(settings) == 1 and "hidden_size = 8" in settings[0] and "lr =" not in settings[0], out
    assert "[train]" not in out and len(out.splitlines()) < 12, out
    assert cli.main(["train", str(text), "--out", str(tmp_path / "v"), "--hidden-size", "8", "--num-layers", "1",
                     "--max-steps", "2", "--batch-size", "2", "--seq-len", "8", "--verbose"]) == 0
    assert "  lr = 0.01" in capsys.readouterr().out


# --- threads -------------------------------------------------------------------------------------
def test_the_thread_default_counts_only_idle_cores():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(threads.usable_cores())]
    try:
        time.sleep(0.5)
        assert threads.idle_cores() == 1  # every core busy: one thread, never a team that waits
    finally:
        for b in burners:
            b.kill()
            b.wait()


def test_thread_flags_and_the_users_choice():
    with pytest.raises(Exception, match="--threads must be a positive integer"):
        threads.choose(0)
    assert threads.choose(3) == 3
    code = ("import torch; torch.set_num_threads(2); import os; os.environ['OMP_NUM_THREADS'] = '2';"
            "from unrolled import threads; print(threads.choose(None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2", out.stderr  # the user's OMP_NUM_THREADS wins over the measurement
    for command in ("train", "sample", "eval", "demo", "cells", "saturation", "ngram", "match"):
        assert "--threads" in {s for a in PARSERS[command]._actions for s in a.option_strings}, command
