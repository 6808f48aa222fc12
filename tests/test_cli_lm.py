"""The language-model commands end to end through `unrolled.cli.main` and a real process:
train, sample, eval, inspect, plot, demo, a config file, Ctrl-C and --resume, and bad input
ending in one sentence with exit status 2 and nothing half-written."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from unrolled.cli import main
from test_train import tiny_text

SMALL = ["--hidden-size", "12", "--num-layers", "1", "--embedding-size", "6", "--batch-size", "2",
         "--seq-len", "8", "--eval-every", "5", "--warmup-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small trained run that the read-only commands share."""
    d = tmp_path_factory.mktemp("cli")
    (d / "text.txt").write_text(tiny_text(120), encoding="utf-8")
    assert main(["train", str(d / "text.txt"), "--out", str(d / "run"), "--max-steps", "10", *SMALL]) == 0
    return d


def err_of(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_train_writes_a_run(run):
    r = run / "run"
    assert (r / "best" / "model.safetensors").exists() and (r / "metrics.jsonl").exists()
    assert json.loads((r / "config.json").read_text())["model"]["hidden_size"] == 12


def test_sample_streams_the_library_sample(run, capsys):
    from unrolled import load, sample
    assert main(["sample", str(run / "run"), "--length", "40", "--seed", "5", "--prime", "the "]) == 0
    out = capsys.readouterr().out
    assert out == sample(load(run / "run"), length=40, seed=5, prime="the ") + "\n"
    assert main(["sample", str(run / "run"), "--length", "10", "--num-samples", "3", "--seed", "1"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 3
    pf = run / "prime.txt"
    pf.write_text("café ")
    assert main(["sample", str(run / "run"), "--length", "5", "--prime-file", str(pf), "--argmax"]) == 0
    assert capsys.readouterr().out.startswith("café ")


def test_eval_table_and_json(run, capsys):
    assert main(["eval", str(run / "run"), str(run / "text.txt"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["chars"] > 0 and abs(res["perplexity"] - 2 ** res["bits_per_char"]) < 1e-6
    (run / "half.txt").write_text((run / "text.txt").read_text()[:500])
    assert main(["eval", str(run / "run"), str(run / "text.txt"), str(run / "half.txt")]) == 0
    assert "(all)" in capsys.readouterr().out


def test_inspect_and_plot(run, capsys):
    assert main(["inspect", str(run / "run")]) == 0
    out = capsys.readouterr().out
    assert "step         10" in out and "vocabulary" in out and "carry.h" in out
    assert main(["inspect", str(run / "run" / "last"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 10
    assert main(["plot", str(run / "run"), "--out", str(run / "curves.png")]) == 0
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_file_sets_settings_and_flags_win(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(tiny_text(60), encoding="utf-8")
    (tmp_path / "c.toml").write_text('cell = "gru"\n[model]\nhidden_size = 9\n[train]\nmax_steps = 3\nlr = 0.01\n')
    assert main(["train", str(tmp_path / "t.txt"), "--config", str(tmp_path / "c.toml"), "--lr", "0.02",
                 "--out", str(tmp_path / "run"), *SMALL[2:]]) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["cell"] == "gru" and cfg["train"]["max_steps"] == 3
    assert cfg["model"]["hidden_size"] == 9 and cfg["train"]["lr"] == 0.02  # the flag wins over the file


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"), (b"", "is empty"), (b"\x7fELF\x00\x01\x02", "looks binary"),
    (b"caf\xe9 au lait", "not UTF-8"),
])
def test_train_bad_text(tmp_path, capsys, content, message):
    f = tmp_path / "in.txt"
    if content is not None:
        f.write_bytes(content)
    assert main(["train", str(f), "--out", str(tmp_path / "run"), "--max-steps", "2", *SMALL]) == 2
    err = err_of(capsys)
    assert err.startswith("unrolled: error: ") and message in err and str(f) in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.parametrize("flags, message", [
    (["--hidden-size", "0"], "--hidden-size must be a positive integer"),
    (["--num-layers", "-2"], "--num-layers must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--seq-len", "0"], "--seq-len must be a positive integer"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be a finite number greater than 0"),
    (["--dropout", "1.5"], "--dropout must be a finite number in [0, 1)"),
    (["--max-minutes", "inf"], "--max-minutes must be a finite number"),
    (["--val-fraction", "0.6", "--test-fraction", "0.5"], "leave some text to train on"),
])
def test_train_flags_out_of_range(tmp_path, capsys, flags, message):
    (tmp_path / "t.txt").write_text("abc" * 100)
    assert main(["train", str(tmp_path / "t.txt"), "--out", str(tmp_path / "run"), *flags]) == 2
    assert message in err_of(capsys)
    assert not (tmp_path / "run").exists()


def test_bad_config_file(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("hidden_sise = 3\n")
    assert main(["train", "--config", str(tmp_path / "c.toml")]) == 2
    assert "unknown setting 'hidden_sise'" in err_of(capsys)
    (tmp_path / "d.toml").write_text("hidden_size = \n")
    assert main(["train", "--config", str(tmp_path / "d.toml")]) == 2
    assert "not valid TOML" in err_of(capsys)


def test_sample_bad_input(run, tmp_path, capsys):
    assert main(["sample", str(run / "run"), "--prime", "zebra"]) == 2
    assert "--prime contains" in err_of(capsys)
    assert main(["sample", str(run / "run"), "--length", "0"]) == 2
    assert "--length must be a positive integer" in err_of(capsys)
    assert main(["sample", str(run / "run"), "--temperature", "nan"]) == 2
    assert "--temperature" in err_of(capsys)
    assert main(["sample", str(run / "run"), "--prime-file", str(tmp_path / "none.txt")]) == 2
    assert "none.txt does not exist" in err_of(capsys)


@pytest.mark.parametrize("command", ["sample", "eval", "inspect"])
def test_missing_truncated_or_foreign_checkpoint(run, tmp_path, capsys, command):
    extra = [str(run / "text.txt")] if command == "eval" else []
    assert main([command, str(tmp_path / "nothing"), *extra]) == 2
    assert "does not exist" in err_of(capsys)
    (tmp_path / "text.txt").write_text("just text")
    assert main([command, str(tmp_path / "text.txt"), *extra]) == 2
    assert "is not a checkpoint" in err_of(capsys)
    import shutil
    shutil.copytree(run / "run" / "best", tmp_path / "cut")
    f = tmp_path / "cut" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    assert main([command, str(tmp_path / "cut"), *extra]) == 2
    assert "damaged" in err_of(capsys)


def test_eval_bad_files(run, tmp_path, capsys):
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02\x03")
    assert main(["eval", str(run / "run"), str(tmp_path / "bin.dat")]) == 2
    assert "looks binary" in err_of(capsys)
    (tmp_path / "new.txt").write_text("zzz qqq")
    assert main(["eval", str(run / "run"), str(tmp_path / "new.txt")]) == 2
    assert "never saw" in err_of(capsys)
    assert main(["eval", str(run / "run"), str(tmp_path / "new.txt"), "--unknown", "skip"]) == 2
    assert "fewer than two" in err_of(capsys)


def test_plot_without_metrics(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in err_of(capsys)


def _train_process(args, env):
    return subprocess.Popen([sys.executable, "-m", "unrolled", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_then_resume_equals_a_run_never_stopped(tmp_path):
    """Real processes: SIGINT mid-run saves at a window edge; --resume ends bit-identical."""
    (tmp_path / "t.txt").write_text(tiny_text(400), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [str(tmp_path / "t.txt"), "--max-steps", "150", "--dropout", "0.2", "--num-layers", "2",
              "--device", "cpu", "--log-every", "1", *SMALL]
    straight = _train_process([*common, "--out", str(tmp_path / "a")], env)
    stopped = _train_process([*common, "--out", str(tmp_path / "b")], env)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 20):
        assert stopped.poll() is None and time.monotonic() < deadline, stopped.communicate()
        time.sleep(0.05)
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    step = json.loads((tmp_path / "b" / "last" / "state.json").read_text())["step"]
    assert 20 <= step < 150
    resumed = subprocess.run([sys.executable, "-m", "unrolled", "train", "--resume", str(tmp_path / "b"),
                              "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait(timeout=300) == 0
    a, b = load_file(str(tmp_path / "a" / "last" / "model.safetensors")), \
        load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_demo_on_a_small_text(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(tiny_text(300), encoding="utf-8")
    assert main(["demo", str(tmp_path / "t.txt"), "--minutes", "0.05", "--out", str(tmp_path / "demo"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample, ") == 2 and "top-p 0.95" in out and "loss curve:" in out
    assert (tmp_path / "demo" / "loss.png").exists() and (tmp_path / "demo" / "best").exists()


def test_every_flag_is_documented():
    """docs/cli.md names every flag of the language-model commands, so it cannot drift."""
    from pathlib import Path

    from unrolled.cli import build_parser
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("train", "sample", "eval", "inspect", "plot", "demo"):
        assert f"unrolled {name}" in doc
        for action in sub.choices[name]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}`" in doc or f"{flag}" in doc, (name, flag)


@pytest.mark.parametrize("flags, message", [(["--minutes", "0"], "--minutes must be a positive number"),
                                            (["--minutes", "nan"], "--minutes must be a positive number"),
                                            (["--threads", "0"], "--threads must be a positive integer")])
def test_demo_flags_out_of_range(tmp_path, capsys, flags, message):
    assert main(["demo", "--out", str(tmp_path / "demo"), *flags]) == 2
    assert message in err_of(capsys)
    assert not (tmp_path / "demo").exists()


def test_documented_train_defaults_match_the_code():
    """Each train setting's row in docs/cli.md shows the default and the comment of its field."""
    from dataclasses import MISSING, fields
    from pathlib import Path

    from unrolled.charlm import config as C
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    helps = C.field_help()
    for cls in C.PARTS.values():
        for f in fields(cls):
            if f.name in ("paths", "progress"):
                continue
            default = f.default if f.default is not MISSING else f.default_factory()
            assert f"| `--{f.name.replace('_', '-')}` | {default} | {helps[f.name]} |" in doc, f.name
