"""The notebooks in notebooks/ run top to bottom on a real Jupyter kernel (ipykernel, this very
Python) and show what they claim: the figures, the rich HTML displays, and numbers that agree
with the library (the "hello" run of `unrolled.hello`, the equations against unrolled's layers
to float64 rounding). The committed notebooks carry no outputs."""
import json
import pathlib
import re
import sys

import pytest

from unrolled import hello

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_the_committed_notebooks_are_valid_and_carry_no_outputs():
    assert NAMES == ["1_vanilla_rnn.ipynb", "2_depth_and_cells.ipynb"]
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip its outputs"
        assert "widgets" not in nb.metadata, name


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel spec that starts ipykernel in this Python (not whichever `python3` kernel the
    machine has installed)."""
    spec = tmp_path / "kernels" / "unrolled-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "unrolled tests", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return "unrolled-tests"


def execute(name: str, kernel: str):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name=kernel,
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # Jupyter's own cwd
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    data = [o.data for o in outputs if o.output_type in ("display_data", "execute_result")]
    return text, data


def numbers_after(label: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(re.escape(label) + r"\s*([0-9.e+-]+)", text)]


def test_the_vanilla_rnn_notebook(kernel):
    text, data = execute("1_vanilla_rnn.ipynb", kernel)
    assert sum("image/png" in d for d in data) == 2  # the unrolled graph of "hello", the TBPTT windows
    predicted, losses = hello.train_reference()
    assert (f"predicts {' '.join(predicted)} (loss {losses[0]:.3f} -> {losses[-1]:.3f} nats)") in text
    assert predicted == "ello"
    diffs = numbers_after("max |by hand - autograd| =", text)
    diffs += numbers_after("max |unrolled.RNN - NumPy reference| over the four hidden states:", text)
    diffs += numbers_after("max |windows with the carried state - one pass| =", text)
    assert len(diffs) == 6 and max(diffs) < 1e-12, diffs
    assert "gradient reaching window 0's inputs: none" in text
    assert numbers_after("without detaching the state: gradient norm", text)[0] > 0
    assert "encoder-decoder  (B, 6) ids -> (B, 5, 12) logits    got (3, 5, 12)" in text
    assert text.count("static int ") >= 3  # the distribution after the prime, and two samples


def test_the_depth_and_cells_notebook(kernel):
    text, data = execute("2_depth_and_cells.ipynb", kernel)
    diffs = [float(v) for v in re.findall(r"equation - unrolled\|[^=\n]*=\s*([0-9.e+-]+)", text)]
    diffs += [float(v) for v in re.findall(r"(?:h|c|step) ([0-9.]+e[+-][0-9]+)", text)]
    assert len(diffs) == 4 + 6 and max(diffs) < 1e-12, diffs
    html = [d["text/html"] for d in data if "text/html" in d]
    assert len(html) == 5 and all(h.startswith('<div class="unrolled">') for h in html)
    recording, ranking, unit, side_by_side, cell_report = html
    assert recording.count("<span") >= 400 and "2 x 128 LSTM over 40,000 characters" in recording
    best = re.search(r"^(\w\d:\d+): AUC strength ([0-9.]+) for in_comment", text, re.M)
    assert best and float(best.group(2)) > 0.9  # a real comment cell, as docs/understanding.md reports
    assert re.search(f"<td>in_comment</td><td>auc</td><td>[0-9.]+%</td><td>{best.group(1)}</td>", ranking)
    assert f"{best.group(1)} (scale" in unit and "in_comment (the feature)" in side_by_side
    assert unit.count("<span") >= 700  # the 700 characters coloured
    assert "<h2>in_string</h2>" in cell_report and "<h2>predictions</h2>" in cell_report
    assert "scored 10,000 of 40,000 characters, 512 units" in text
