"""Every example runs on a fresh clone: a copy of examples/ in a temporary folder with no shared
data anywhere above it, each script a real process with a short budget (`--max-minutes 0.2` and
small sizes), exit status 0 and its result JSON on stdout. A bad corpus path names its flag."""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
QUICK = ["--max-minutes", "0.2", "--threads", "1"]

# script -> (flags for a quick run, keys its JSON must have)
RUNS = {
    "classify_corpus.py": ([*QUICK, "--max-chars", "200000", "--test", "50", "--hidden", "32"],
                           ["accuracy", "accuracy_per_corpus", "corpora"]),
    "generate_by_label.py": ([*QUICK, "--max-chars", "200000", "--test-pieces", "20", "--sample-chars", "60",
                              "--hidden", "32"],
                             ["test_bpc_text_under_label", "right_label_margin_bpc", "samples", "corpora"]),
    "tag_python_tokens.py": ([*QUICK, "--train-chars", "100000", "--test-chars", "20000", "--hidden", "32"],
                             ["accuracy", "baseline_most_frequent_class", "accuracy_per_class"]),
    "encoder_decoder.py": ([*QUICK, "--train", "2000", "--test", "50", "--hidden", "32"],
                           ["greedy_exact_match", "beam4_exact_match", "examples"]),
    "forecast_elec_equip.py": ([*QUICK, "--seeds", "1", "--epochs", "100"],
                               ["mae", "mae_per_seed", "epochs_run"]),
}


def has_shared_above(folder: pathlib.Path) -> bool:
    return any((d / "shared").exists() for d in (folder, *folder.parents))


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A folder holding a copy of examples/ (its data too) and nothing else, no shared/ above it."""
    base = tmp_path_factory.mktemp("fresh")
    if has_shared_above(base):  # pytest was pointed at a folder beside the data: try the system's
        base = pathlib.Path(tempfile.mkdtemp(prefix="unrolled-fresh-"))
        if has_shared_above(base):
            shutil.rmtree(base)
            pytest.skip("every temporary folder here has a shared/ folder above it")
    shutil.copytree(EXAMPLES, base / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    yield base
    if base.name.startswith("unrolled-fresh-"):
        shutil.rmtree(base, ignore_errors=True)


def run(clone, script, *args, timeout=150):
    return subprocess.run([sys.executable, str(clone / "examples" / script), *map(str, args)], cwd=clone,
                          capture_output=True, text=True, timeout=timeout)


def test_every_example_is_run_here():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"corpora.py", "saved.py"}  # the helpers
    assert scripts == set(RUNS)


def test_no_example_or_doc_of_them_names_data_beside_the_checkout():
    root = EXAMPLES.parent
    texts = [*EXAMPLES.rglob("*.py"), *EXAMPLES.rglob("*.md"), root / "docs" / "topologies.md",
             root / "docs" / "understanding.md", root / "models" / "linux-lstm-2x128" / "README.md"]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "shared/data" not in text, path


@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs_on_a_fresh_clone(clone, script):
    flags, keys = RUNS[script]
    r = run(clone, script, *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout[-3000:]
    result = json.loads(lines[0])
    assert all(key in result for key in keys), sorted(result)


def test_a_bad_corpus_path_names_its_flag(clone, tmp_path):
    r = run(clone, "classify_corpus.py", "--linux", tmp_path / "missing.c", "--max-chars", "1000")
    assert r.returncode == 2 and "missing.c does not exist; pass the right file with --linux" in r.stderr
    r = run(clone, "generate_by_label.py", "--include", tmp_path, "--max-chars", "1000")
    assert r.returncode == 2 and "no C headers (*.h) found under" in r.stderr and "--include DIR" in r.stderr
    r = run(clone, "forecast_elec_equip.py", "--csv", tmp_path / "missing.csv")
    assert r.returncode == 2 and "missing.csv does not exist; pass the series with --csv" in r.stderr
    assert "Traceback" not in r.stderr
