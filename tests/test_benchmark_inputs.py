"""The benchmarks that read corpora the project does not ship: without them each says in one
sentence what is missing and where to get it, exits with 2, and leaves a result file it was told
to write (--out) exactly as it was; with a result, --out holds what stdout printed, written in one
step."""
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
ROOT = BENCH.parent
ANCHOR = "models/linux-lstm-2x128/README.md#the-linux-corpus"


def script(name: str):
    """A benchmark script as a module (its siblings importable, as when it runs as a script)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_anchor_the_messages_give_exists():
    page, anchor = ANCHOR.split("#")
    headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(encoding="utf-8"), re.M)
    assert anchor in {h.strip().lower().replace(" ", "-") for h in headings}


def test_quality_without_the_corpora_leaves_out_untouched(tmp_path):
    before = b'{"kept": true}\n'
    out = tmp_path / "quality.json"
    out.write_bytes(before)
    r = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--data", str(tmp_path / "empty"),
                        "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert out.read_bytes() == before
    assert r.stdout == ""
    message = r.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "shakespeare/works.txt" in message and "linux/kernel.txt" in message and ANCHOR in message
    assert f"{out} is left as it was" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.json"]


def test_minimal_quality_names_only_the_corpus_that_is_missing(tmp_path, capsys):
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "works.txt").write_text("to be or not to be\n", encoding="utf-8")
    out = tmp_path / "minimal.json"
    assert script("minimal_quality").main(["--data", str(tmp_path), "--out", str(out)]) == {}
    err = capsys.readouterr().err
    assert "linux/kernel.txt not found" in err and "works.txt" not in err
    assert not out.exists()


def test_a_missing_out_folder_is_said_before_anything_runs(tmp_path, capsys):
    quality = script("quality")
    assert quality.main(["--data", str(tmp_path), "--out", str(tmp_path / "no" / "q.json")]) == {}
    assert "the folder of --out" in capsys.readouterr().err


def test_write_result_writes_what_stdout_printed(tmp_path, capsys):
    setup = script("quality_setup")
    out = tmp_path / "r.json"
    out.write_text("old", encoding="utf-8")
    result = {"corpora": {"linux": {"test_bpc": 2.5}}, "settings": {"seed": 3}}
    setup.write_result(result, str(out))
    printed = capsys.readouterr().out
    assert json.loads(printed) == result and out.read_text(encoding="utf-8") == printed
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_write_result_interrupted_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    setup = script("quality_setup")
    out = tmp_path / "r.json"
    out.write_text("old", encoding="utf-8")

    def refuse(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(KeyboardInterrupt):
        setup.write_result({"a": 1}, str(out))
    assert out.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("name, argv", [
    ("understand_linux", ["ngram", "{k}", "{o}"]),
    ("understand_linux", ["model", "{k}", "{o}", "models/linux-lstm-2x128"]),
    ("train_linux_lstm", ["{k}", "{o}", "1"]),
    ("evidence_linux", ["models/linux-lstm-2x128", "{k}"]),
])
def test_linux_benchmarks_without_the_corpus_say_where_to_get_it(tmp_path, capsys, name, argv):
    kernel = tmp_path / "kernel.txt"
    args = [a.format(k=kernel, o=tmp_path / "out") for a in argv]
    assert script(name).main(args) == 2
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert captured.out == "" and "\n" not in message
    assert str(kernel) in message and ANCHOR in message
    assert not (tmp_path / "out").exists()


def test_understand_model_before_ngram_says_to_run_ngram_first(tmp_path, capsys):
    kernel = tmp_path / "kernel.txt"
    kernel.write_text("int main(void) { return 0; }\n" * 10, encoding="utf-8")
    assert script("understand_linux").main(["model", str(kernel), str(tmp_path / "u"), "models/linux-lstm-2x128"]) == 2
    err = capsys.readouterr().err
    assert "ngram_logp.npy" in err and f"understand_linux.py ngram {kernel}" in err


def test_recipe_demo_set_trains_with_the_demos_own_settings(monkeypatch):
    """benchmarks/recipe.py --set demo writes the demo's settings out as flags; they must be the
    ones `unrolled demo` really passes to train, or its ablation measures another model."""
    from unrolled.charlm import demo as demo_module

    seen = {}

    class Stop(Exception):
        pass

    def capture(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(demo_module, "train", capture)
    with pytest.raises(Stop):
        demo_module.demo(minutes=3.0, progress=False)
    flags = script("recipe").DEMO_BASE
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert len(pairs) * 2 == len(flags)
    for flag, value in pairs.items():
        field = flag[2:].replace("-", "_")
        assert float(value) == seen[field], flag
    assert {f[2:].replace("-", "_") for f in pairs} >= {"hidden_size", "num_layers", "embedding_size", "batch_size",
                                                         "seq_len", "eval_every", "eval_max_chars"}


def test_recipe_names_a_missing_corpus_and_an_unknown_variant(tmp_path):
    for args, expect in (([str(tmp_path / "none.txt")], "none.txt is not a file"),
                         (["--set", "demo", "--only", "nope"], "'nope' is not a variant of --set demo")):
        r = subprocess.run([sys.executable, str(BENCH / "recipe.py"), *args, "--out", str(tmp_path / "runs")],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "runs").exists()


def test_recipe_reuses_a_saved_rate_only_for_the_same_flags():
    """A DIR's rates.json from one --set or --seed must not lend its rate to a variant of the same
    name that trains with other flags (the "defaults" of `train` and `train-2x256` differ)."""
    recipe = script("recipe")
    base, variants = recipe.SETS["train"]
    flags = {name: base + f for name, f in variants.items()}
    old_base, old_variants = recipe.SETS["train-2x256"]
    saved = {"defaults": {"flags": old_base + old_variants["defaults"], "updates_per_s": 4.5},
             "batch 16": {"flags": flags["batch 16"], "updates_per_s": 5.4},
             "window 64": 6.1,  # written before the flags were kept: measured again
             "gone": {"flags": [], "updates_per_s": 1.0}}
    assert recipe.known_rates(saved, flags) == {"batch 16": 5.4}
    assert recipe.known_rates(saved, {n: old_base + f for n, f in old_variants.items()}) == {"defaults": 4.5}


def test_subnormals_names_a_missing_corpus_and_too_few_steps(tmp_path, capsys):
    bench = script("subnormals")
    assert bench.main([str(tmp_path / "none.txt")]) == 2
    assert "none.txt is not a file" in capsys.readouterr().err
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc\n" * 100, encoding="utf-8")
    assert bench.main([str(corpus), "--steps", "40"]) == 2
    assert "--steps must be above 60" in capsys.readouterr().err


def test_big_machine_fits_its_thread_counts_to_the_cores():
    bm = script("big_machine")
    assert bm.thread_counts([4, 8, 16], 16) == [4, 8, 16]
    assert bm.thread_counts([4, 8, 16], 6) == [4]
    assert bm.thread_counts([4, 8, 16], 2) == [2]  # a small machine measures its own count


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_big_machine_without_a_gpu_skips_the_cuda_parts_and_says_so(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / "big_machine.py"), "--out", str(tmp_path / "bm"),
                        "--parts", "cuda", "minimal-cuda"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "cuda: skipped: this torch sees no CUDA device" in r.stderr
    result = json.loads((tmp_path / "bm" / "result.json").read_text())
    assert set(result["parts"]) == {"cuda", "minimal-cuda"}
    assert all("skipped" in p for p in result["parts"].values())
    assert "## minimal-cuda" in (tmp_path / "bm" / "summary.md").read_text()
    r = subprocess.run([sys.executable, str(BENCH / "big_machine.py"), "--out", str(tmp_path / "no" / "bm")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
