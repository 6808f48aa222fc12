"""Every topology example saves its model (`--save DIR`) and applies a saved one to a user's file
(`--load DIR --predict FILE`): one output per input line, and the saved model's outputs are
exactly the ones the model just trained in the same process gave (tiny runs). Bad files and
flags end in one sentence. The examples' `main` runs in this process (their training is a few
updates; a process per run would spend most of its time importing torch)."""
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest
import torch

from unrolled.errors import UserError

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
QUICK = ["--max-minutes", "0.02", "--threads", "1"]


def example(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import corpora and saved beside them
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


MONTHS = "97.19,97.35,109.99,102.13,89.56,111.03,106.06,108.1,111.03,92.73,95.49,110.57,97.05"
# name -> (flags of a tiny training run, lines of a user's file)
RUNS = {
    "classify_corpus": ([*QUICK, "--steps", "3", "--max-chars", "20000", "--test", "5", "--hidden", "8"],
                        ["def main():", "", "#include <stdio.h>", "To be, or not to be" * 9]),
    "tag_python_tokens": ([*QUICK, "--steps", "3", "--train-chars", "20000", "--test-chars", "3000",
                           "--hidden", "8", "--window", "16"],
                          ['def f(x):', '    """a', '    string"""', '', '    return x + 10  # ten'] * 3),
    "generate_by_label": ([*QUICK, "--steps", "3", "--max-chars", "20000", "--test-pieces", "2",
                           "--sample-chars", "12", "--hidden", "8"], ["python", "", " c ", "english"]),
    "encoder_decoder": ([*QUICK, "--steps", "3", "--train", "200", "--test", "5", "--hidden", "8", "--beam", "2"],
                        ["29 Nov 2026", "", "11/29/26", "the 3rd of May, 1999"]),
    "forecast_elec_equip": ([*QUICK, "--seeds", "2", "--epochs", "5", "--hidden", "4"],
                            [MONTHS, "", MONTHS.replace(",", "  "), MONTHS.replace("97.19", "120")]),
}


def main(module, *argv) -> int:
    return module.main([str(a) for a in argv])


def outputs(capsys) -> list:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_saved_model_predicts_what_the_trained_one_did(name, tmp_path, capsys):
    flags, lines = RUNS[name]
    module = example(name)
    (tmp_path / "in.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    saved = tmp_path / "model"
    assert main(module, *flags, "--save", saved, "--predict", tmp_path / "in.txt") == 0
    result, *trained = outputs(capsys)
    assert result["saved"] == str(saved) and (saved / "state.json").exists()
    assert main(module, "--load", saved, "--predict", tmp_path / "in.txt", *flags[4:]) == 0
    loaded = outputs(capsys)
    assert len(loaded) == len(lines) and loaded == trained
    for line, out in zip(lines, loaded):
        assert (out is None) == (not line.strip()) or name == "tag_python_tokens"
    if name == "tag_python_tokens":
        assert [len(t) for t in loaded] == [len(line) for line in lines]
        assert set("".join(loaded)) <= set(module.LETTERS.values())
    if name == "generate_by_label":
        assert [len(s) for s in loaded if s is not None] == [12, 12, 12]
    if name == "classify_corpus":
        assert {label for label in loaded if label} <= {"english", "c", "python"}
    if name == "forecast_elec_equip":
        assert loaded[0] == loaded[2] != loaded[3]  # commas or spaces alike; a changed month changes it


def test_a_bad_file_or_flag_is_one_sentence(tmp_path, capsys):
    classify, forecast = example("classify_corpus"), example("forecast_elec_equip")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    for path, said in [(tmp_path / "missing.txt", "no such file"), (tmp_path, "is a folder"),
                       (tmp_path / "latin1.txt", "is not UTF-8 text (byte 3)"), (tmp_path / "empty.txt", "is empty")]:
        with pytest.raises(UserError, match=f"--predict .*{re.escape(said)}"):
            main(classify, "--predict", path)  # named before any training
    with pytest.raises(UserError, match="--load needs --predict FILE"):
        main(classify, "--load", tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="exists and is not a saved model"):
        main(classify, "--save", tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text(encoding="utf-8") == "mine"
    (tmp_path / "in.txt").write_text("1, 2, 3\n", encoding="utf-8")
    assert main(forecast, *RUNS["forecast_elec_equip"][0], "--save", tmp_path / "f") == 0
    capsys.readouterr()
    with pytest.raises(UserError, match="line 1 of the --predict file is '1, 2, 3'; each line must hold the last 13"):
        main(forecast, "--load", tmp_path / "f", "--predict", tmp_path / "in.txt")
    with pytest.raises(UserError, match="holds a model of forecast_elec_equip.py; give it a folder that "
                                        "classify_corpus.py --save wrote"):
        main(classify, "--load", tmp_path / "f", "--predict", tmp_path / "in.txt")
    with pytest.raises(UserError, match="no such folder"):
        main(classify, "--load", tmp_path / "nowhere", "--predict", tmp_path / "in.txt")


def test_a_bad_predict_file_ends_the_process_in_one_sentence(tmp_path):
    """As a real process: exit status 2, the sentence, no traceback (encoder_decoder too)."""
    for name in ("encoder_decoder", "forecast_elec_equip"):
        r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--predict", str(tmp_path / "none.txt")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.stderr.strip() == f"error: --predict {tmp_path / 'none.txt'}: no such file; give a UTF-8 text " \
                                   "file with one input per line"
