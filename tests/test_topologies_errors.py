"""Bad input gets one clear sentence: over-long and empty sequences, unknown labels, broken CSVs,
missing corpora (the example scripts, run as real processes, exit 2 with an `error:` line)."""
import json
import pathlib
import subprocess
import sys

import pytest
import torch

import unrolled
from conftest import B, D, H, T, V

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, timeout=120):
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


# --- the library --------------------------------------------------------------------------------
def test_sequences_longer_than_the_stated_limit():
    x = torch.randint(0, V, (B, T))
    for m in (unrolled.ManyToOne(V, 3, H, encoding="embedding", max_length=T - 1),
              unrolled.ManyToMany(V, 3, H, encoding="embedding", max_length=T - 1)):
        with pytest.raises(ValueError, match=f"length {T} is longer than this model's max_length={T - 1}"):
            m(x)
        m(x, lengths=[T - 1, 1])  # the padded batch is fine when every real row fits
    ed = unrolled.EncoderDecoder(V, V, H, max_source_length=T - 1, max_target_length=2)
    with pytest.raises(ValueError, match="source sequence of length"):
        ed.encode(x)
    with pytest.raises(ValueError, match="target sequence of length 3"):
        ed(x[:, :2], x)
    with pytest.raises(ValueError, match="max_length is 2"):
        unrolled.OneToMany(3, V, H, max_length=2).generate(torch.tensor([0]), steps=3)


def test_empty_sequences():
    m = unrolled.ManyToOne(V, 3, H, encoding="embedding")
    with pytest.raises(ValueError, match=r"empty sequence \(T = 0\)"):
        m(torch.zeros(B, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty sequence at batch row 1"):
        m(torch.randint(0, V, (B, T)), lengths=[T, 0])
    ed = unrolled.EncoderDecoder(V, V, H)
    with pytest.raises(ValueError, match="empty target sequence"):
        ed(torch.randint(0, V, (B, T)), torch.zeros(B, 0, dtype=torch.long))


def test_unknown_labels_and_tokens():
    with pytest.raises(ValueError, match=r"unknown class 3: OneToMany knows classes 0\.\.2"):
        unrolled.OneToMany(3, V, H).generate(torch.tensor([0, 3]), steps=2)
    m = unrolled.ManyToOne(V, 3, H, encoding="embedding")
    with pytest.raises(ValueError, match=r"target token id 3 is outside the vocabulary 0\.\.2"):
        m.loss(torch.randint(0, V, (B, T)), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"input token id 7 is outside the vocabulary 0\.\.6"):
        m(torch.full((B, T), V))
    with pytest.raises(ValueError, match="expects \\(B, T\\) token ids"):
        m(torch.randn(B, T, D))
    with pytest.raises(ValueError, match="bos_token=9 is outside the target vocabulary"):
        unrolled.EncoderDecoder(V, V, H, bos_token=9)


def test_bad_construction():
    with pytest.raises(ValueError, match="cell must be one of"):
        unrolled.ManyToOne(D, 3, H, "transformer")
    with pytest.raises(ValueError, match="encoding must be one of"):
        unrolled.ManyToOne(D, 3, H, encoding="bytes")
    with pytest.raises(ValueError, match="pool must be one of"):
        unrolled.ManyToOne(D, 3, H, pool="attention")
    with pytest.raises(ValueError, match="head must be one of"):
        unrolled.ManyToMany(D, 3, H, head="rank")
    with pytest.raises(ValueError, match="needs init_state or feed_input"):
        unrolled.OneToMany(3, V, H, init_state=False, feed_input=False)
    with pytest.raises(ValueError, match="teacher_forcing must be a probability"):
        unrolled.EncoderDecoder(V, V, H)(torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T)), teacher_forcing=2)


# --- the example scripts, as real processes ------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ("DATE,VALUE\nJan-1-1995,66.19\nFeb-1-1995,\n", "line 3 has no value"),
    ("DATE,VALUE\nJan-1-1995,66.19\nFeb-1-1995,lots\n", "line 3 has the non-numeric value 'lots'"),
    ("DATE,VALUE\nJan-1-1995,nan\n", "line 2 has the value 'nan'"),
])
def test_series_reader_refuses_missing_and_non_numeric_values(tmp_path, content, message):
    sys.path.insert(0, str(EXAMPLES))
    try:
        from forecast_elec_equip import read_series
    finally:
        sys.path.remove(str(EXAMPLES))
    path = tmp_path / "series.csv"
    path.write_text(content)
    with pytest.raises(unrolled.UserError, match=message):
        read_series(str(path))


def test_forecast_script_exits_2_on_a_broken_csv(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("DATE,VALUE\nJan-1-1995,66.19\nFeb-1-1995,lots\n")
    r = run_example("forecast_elec_equip.py", "--csv", path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "line 3 has the non-numeric value 'lots'" in r.stderr
    assert "Traceback" not in r.stderr
    path.write_text("DATE,VALUE\nJan-1-1995,66.19\n")
    r = run_example("forecast_elec_equip.py", "--csv", path)
    assert r.returncode == 2 and "needs at least" in r.stderr


def test_examples_refuse_a_missing_corpus_and_an_unknown_label(tmp_path):
    r = run_example("classify_corpus.py", "--shakespeare", tmp_path / "nope.txt")
    assert r.returncode == 2 and "nope.txt does not exist; pass the right file with --shakespeare" in r.stderr
    r = run_example("generate_by_label.py", "--sample-label", "klingon")
    assert r.returncode == 2 and "unknown label 'klingon' for --sample-label" in r.stderr
    assert "Traceback" not in r.stderr


def test_encoder_decoder_example_runs_end_to_end():
    r = run_example("encoder_decoder.py", "--task", "addition", "--reverse", "--train", 200, "--test", 20,
                    "--steps", 3, "--hidden", 8, "--threads", 1)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["task"] == "addition" and 0 <= result["greedy_exact_match"] <= 1 and "beam4_exact_match" in result
