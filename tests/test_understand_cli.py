"""The understanding commands end to end on a real (tiny) checkpoint, the HTML they write, and
bad input ending in one sentence with exit status 2."""
import re

import numpy as np
import pytest

from tiny_c import CODE, train_tiny_c
from unrolled.cli import main
from unrolled.understand import render


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_c(tmp_path_factory.mktemp("understand"))


def test_cells_prints_the_table_and_writes_escaped_html(run, capsys):
    html, pngs = run / "cells.html", run / "png"
    assert main(["cells", str(run / "run"), str(run / "code.c"), "--out", str(html), "--png-dir", str(pngs),
                 "--top", "2", "--excerpt", "300", "--feature", "in_comment", "--feature", "bracket_depth",
                 "--feature", "ret=return"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"in_comment\s+auc\s+[hc][01]:\d", out) and "bracket_depth" in out and "ret " in out
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert "&lt;" in page and "&amp;" in page and "&quot;" in page  # from the text's  <  &  "
    assert sorted(p.name for p in pngs.iterdir()) == ["bracket_depth.png", "in_comment.png", "ret.png"]


def test_saturation_and_ngram_commands(run, capsys):
    png = run / "sat.png"
    assert main(["saturation", str(run / "run"), str(run / "code.c"), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.stat().st_size > 0 and re.search(r"^f\s+0\s", out, re.M)
    assert main(["ngram", str(run / "code.c"), "--orders", "1,3", "--model", str(run / "run")]) == 0
    out = capsys.readouterr().out
    assert "3-gram" in out and "LSTM 2x5" in out and "inside a comment" in out


def test_match_command(run, capsys):
    a = CODE.index("comment")
    assert main(["match", str(run / "run"), str(run / "code.c"), "--span", f"{a}:{a + 7}", "--states", "h,c",
                 "--pad", "0", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("selected 'comment'") and f"{a}:{a + 7}" in out


@pytest.mark.parametrize("argv, message", [
    (["cells", "{run}/run", "{run}/missing.txt"], "missing.txt does not exist"),
    (["cells", "{run}/nowhere", "{run}/code.c"], "nowhere does not exist"),
    (["cells", "{run}/run", "{run}/code.c", "--top", "0"], "--top must be a positive integer"),
    (["cells", "{run}/run", "{run}/code.c", "--feature", "nope"], "unknown feature 'nope'"),
    (["cells", "{run}/run", "{run}/code.c", "--feature", "x=("], "is not a regular expression"),
    (["cells", "{run}/run", "{run}/code.c", "--states", "z"], "records h, c, i, f, g, o, not 'z'"),
    (["cells", "{run}/run", "{run}/greek.txt"], "never saw"),
    (["cells", "{run}/run", "{run}/code.c", "--out", "{run}/no/such/dir/r.html"], "does not exist; create it"),
    (["ngram", "{run}/code.c", "--orders", "0,30"], "--orders must lie in 1..20"),
    (["match", "{run}/run", "{run}/code.c", "--span", "5"], "--span must be START:END"),
    (["match", "{run}/run", "{run}/code.c", "--span", "5:99999"], "must lie within the text"),
    (["saturation", "{run}/run", "{run}/code.c", "--threads", "0"], "--threads must be a positive integer"),
])
def test_bad_input_is_one_sentence(run, capsys, argv, message):
    (run / "greek.txt").write_text("\u03b1\u03b2\u03b3")
    assert main([a.replace("{run}", str(run)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled: error: ") and message in err and "Traceback" not in err
    assert not list(run.glob("**/*.tmp*"))  # nothing half-written


def test_html_escapes_text_and_hover():
    text = '<b>&"\'</b>\n'
    page = render.units_html(text, [('unit "<1>"', np.linspace(-1, 1, len(text)))])
    body = page.split("<body>")[1]
    assert "<b>" not in body and "</b>" not in body  # one span per character, each escaped
    for escaped in ("&lt;", "&gt;", "&amp;", "&quot;", "&#x27;"):
        assert f">{escaped}</span>" in body
    assert 'title="unit &quot;&lt;1&gt;&quot; = -1.000"' in body
    block = render.prediction_block("a<", np.array([np.nan, 0.25]), [None, [("<", 0.7), ("&", 0.2)]])
    assert "&lt;  0.700" in block and "&amp;  0.200" in block
    assert render.rgb(-1.0) == (0, 0, 255) and render.rgb(0.0) == (255, 255, 255) and render.rgb(2.0) == (255, 0, 0)
