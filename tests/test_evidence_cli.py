"""The evidence commands (intervene, attribute, span, probe, sample --clamp) end to end on a real
tiny checkpoint: JSON with the fields the docs promise, and bad flags ending in one sentence."""
import json

import pytest

from tiny_c import train_tiny_c
from unrolled.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_c(tmp_path_factory.mktemp("evidence"))


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_intervene_json_and_table(run, capsys):
    ck, f = str(run / "run"), str(run / "code.c")
    r = _json(capsys, ["intervene", ck, f, "--unit", "c1:3", "--ablate", "mean", "--controls", "4", "--json"])
    assert {"delta_bpc", "by_feature", "controls"} <= set(r) and 0 <= r["controls"]["percentile"] <= 100
    assert set(r["by_feature"]) == {"in_comment", "in_string", "in_if_condition"}
    assert main(["intervene", ck, f, "--unit", "h0:1", "--clamp", "2", "--span", "10:50", "--controls", "0"]) == 0
    assert "held at 2" in capsys.readouterr().out


def test_attribute_and_span_json(run, capsys):
    ck, f = str(run / "run"), str(run / "code.c")
    r = _json(capsys, ["attribute", ck, f, "--at", "60", "--window", "30", "--json"])
    assert len(r["attributions"]) == 30 and r["attributions"][0]["offset"] == 0
    assert r["completeness_error"] < 0.01
    s = _json(capsys, ["span", ck, f, "--unit", "c0:2", "--max-offset", "20", "--samples", "8", "--json"])
    assert len(s["gradient"]) == 21 and s["offsets"][-1] == 20


def test_probe_json(run, capsys):
    r = _json(capsys, ["probe", str(run / "run"), str(run / "code.c"), "--feature", "in_comment",
                       "--layer", "0", "--json"])
    assert {"probe", "best_unit", "control", "selectivity"} <= set(r)
    assert r["selectivity"] == pytest.approx(r["probe"] - r["control"])


def test_sample_with_clamps(run, capsys):
    assert main(["sample", str(run / "run"), "--length", "30", "--seed", "1", "--clamp", "c1:2=3",
                 "--clamp", "h0:0=-1"]) == 0
    assert len(capsys.readouterr().out) >= 30


@pytest.mark.parametrize("argv,words", [
    (["intervene", "--unit", "q1:2", "--ablate", "zero"], "--unit"),
    (["intervene", "--unit", "c1:2", "--ablate", "zero", "--span", "x"], "--span"),
    (["intervene", "--unit", "c1:2", "--ablate", "zero", "--controls", "99"], "--controls"),
    (["attribute", "--at", "100000"], "--at"),
    (["attribute", "--at", "5", "--baseline", "ab"], "--baseline"),
    (["span", "--unit", "c1:99"], "--unit"),
    (["probe", "--feature", "nope"], "feature"),
    (["probe", "--feature", "in_string", "--layer", "5"], "--layer"),
    (["sample", "--clamp", "c1:2"], "--clamp"),
])
def test_bad_flags_are_one_sentence(run, capsys, argv, words):
    args = [argv[0], str(run / "run")] + ([] if argv[0] == "sample" else [str(run / "code.c")]) + argv[1:]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
