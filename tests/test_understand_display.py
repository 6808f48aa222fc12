"""Rich display in Jupyter: a recording, a unit colouring, a ranking and a cell report each have a
`_repr_html_` built by the same renderers as the HTML files, and what they show is the real
computation (each character's colour from the model's own probabilities, each unit's from its
own values)."""
import json
import re

import numpy as np
import pytest
import torch

from understand_standin import StandInLM
from unrolled.errors import UserError
from unrolled.understand import rank_units, record, render, report

TEXT = "int f(int a) {\n  /* add */ return a + 1; // one\n}\n"
COLOUR = re.compile(r'<span(?: class="nl")? style="background:(#[0-9a-f]{6})"')
TEXT_BLOCK = re.compile(r'<div class="text">(.*?)</div>', re.S)


def colours(html: str) -> list[str]:
    """The background of every character drawn over the text (the legend left out)."""
    return [c for block in TEXT_BLOCK.findall(html) for c in COLOUR.findall(block)]


def model_and_recording():
    torch.manual_seed(3)
    model = StandInLM(TEXT, "lstm", embed=4, hidden=5, layers=2).double()
    return model, record(model, TEXT, streams=1)


def test_a_recording_shows_each_character_on_the_probability_the_model_gave_it():
    model, rec = model_and_recording()
    html = rec._repr_html_()
    ids = torch.tensor([model.vocab.encode(TEXT)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0][0], dim=-1)  # (N, V), the oracle: the model's forward
    p = [float("nan")] + [logp[t - 1, ids[0, t]].exp().item() for t in range(1, len(TEXT))]
    want = [render._hex(render.rgb(2 * q - 1)) for q in p]
    assert colours(html) == want
    assert "2 x 5 LSTM" in html and f"{len(TEXT)} characters" in html
    assert html.startswith('<div class="unrolled">') and "<body" not in html


def test_show_colours_a_unit_by_its_values_and_refuses_characters_not_kept():
    model, rec = model_and_recording()
    page = rec.show(["c1:3", "h0:0"], 4, 20)
    values = [rec.unit(name)[4:20] for name in ("c1:3", "h0:0")]
    want = [render._hex(render.rgb(v, np.abs(vs).max())) for vs in values for v in vs]
    assert colours(page._repr_html_()) == want
    assert page.startswith("<!DOCTYPE html>")  # still the whole page, as a string
    sparse = record(model, TEXT, positions=[0, 1, 5], streams=1)
    with pytest.raises(UserError, match="did not keep every character of 0..4; record with positions"):
        sparse.show("h0:0", 0, 4)


def test_the_notebook_style_is_scoped_to_the_fragment():
    css = re.search(r"<style>(.*)</style>", render.fragment("x"), re.S).group(1)
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", css) for s in rule.split(",")]
    assert selectors and all(s.startswith(".unrolled") for s in selectors), selectors
    assert ".unrolled {" in css  # the page's body rule applies to the fragment's own div


def test_a_ranking_shows_its_table_and_stays_a_plain_dict():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 4))
    feature = values[:, 2] < -0.3  # unit u2 is low exactly there
    table = rank_units(values, ["u0", "u1", "u2", "u3"], {"marked": feature, "level": values[:, 1] * 2}, top=3)
    html = table._repr_html_()
    assert table["marked"]["best"][0]["unit"] == "u2" and table["marked"]["best"][0]["sign"] == -1
    assert "<td>marked</td><td>auc</td>" in html and "<td>u2</td><td>-1.000</td>" in html
    assert "<td>level</td><td>r</td><td></td><td>u1</td><td>+1.000</td>" in html
    assert json.loads(json.dumps(table)) == table


def test_a_cell_report_shows_the_page_it_writes(tmp_path):
    model, _ = model_and_recording()
    text = TEXT * 20
    out = report.cells(model, text, language="c", sample=None, excerpt=200, warmup=0,
                       html=tmp_path / "cells.html")
    html = out._repr_html_()
    written = (tmp_path / "cells.html").read_text(encoding="utf-8")
    assert out.page == written and out.page.body in written
    assert "<h2>predictions</h2>" in html and "<h2>in_comment</h2>" in html
    assert render.ranking_table(out["ranking"]) in html
    assert json.loads(json.dumps(out))["chars"] == len(text)


def test_p_of_chars_is_the_probability_of_each_character_from_the_ones_before():
    model, rec = model_and_recording()
    ids = torch.tensor([model.vocab.encode(TEXT)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0][0], dim=-1)  # (N, V)
    want = np.array([logp[t - 1, ids[0, t]].exp().item() for t in range(1, len(TEXT))])
    np.testing.assert_allclose(rec.p_of_chars(5, 30), want[4:29], rtol=1e-6)
    assert np.isnan(rec.p_of_chars(0, 3)[0]) and rec.p_of_chars(0, 3)[1:] == pytest.approx(want[:2], rel=1e-6)
