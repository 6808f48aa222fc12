"""The viewer end to end: a real `unrolled serve` process and Debian's Chromium driven by Playwright.

Open the page (on the text's default feature and the best unit of its ranking, under one heading),
pick a unit and see the characters coloured as its values say, rank units for a feature (scored as
`unrolled cells` prints it), drag over a span and get the units that fire on it and the places they fire again,
hover for the top-5 guesses, sample text as it streams, see the gate saturation plotted with
left-saturation on x as the CLI and the paper draw it, explore a pasted text and a long server file. A screenshot goes
to test-artifacts/viewer.png.

The docs' screenshot comes from the same test on the committed model (see docs/viewer.md):
UNROLLED_VIEWER_CHECKPOINT, UNROLLED_VIEWER_TEXT and UNROLLED_VIEWER_SCREENSHOT override the
tiny model, the text and the screenshot's path.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("playwright.sync_api")  # the chromium fixture (conftest.py) drives it

from unrolled.charlm.run import load  # noqa: E402
from unrolled.charlm.sample import sample  # noqa: E402
from web_model import c_like, serve_process, tiny_run  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = os.environ.get("UNROLLED_VIEWER_CHECKPOINT") or str(tiny_run())
    text_file = os.environ.get("UNROLLED_VIEWER_TEXT")
    if not text_file:
        text_file = tmp_path_factory.mktemp("browser")
        (text_file / "example.c").write_text(c_like(1_500, seed=2), encoding="utf-8")  # opened first
        (text_file / "long.c").write_text(c_like(8_000, seed=4), encoding="utf-8")  # over --max-chars: cut
    with serve_process(checkpoint, "--text", str(text_file), "--max-chars", "6000") as url:
        yield url, checkpoint


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def colour(v: float, lo: float, hi: float) -> str:
    """The page's blue-white-red scale, as the browser reports it."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2 or 1
    t = max(-1.0, min(1.0, (v - mid) / half))
    w = math.floor(255 * (1 - 0.8 * abs(t)) + 0.5)  # as JavaScript's Math.round
    return f"rgb(255, {w}, {w})" if t >= 0 else f"rgb({w}, {w}, 255)"


def heading(t: dict) -> str:
    """The page's one heading of a text: its name, its size once, its language once."""
    language = {"c": "C", "python": "Python"}.get(t["language"], t["language"])
    return f"{t['name']} ({'first ' if t['file_chars'] else ''}{t['length']:,} characters, {language})"


def backgrounds(page, positions) -> list[str]:
    return page.evaluate("(ps) => ps.map((i) => getComputedStyle(document.querySelectorAll('#text span')[i]).backgroundColor)",
                         positions)


def open_viewer(chromium, base: str, height: int):
    """The viewer at `base` in a new page, once it shows the first text: (the page, the list its
    script errors and failed requests are appended to, /api/info, that text's id, the text)."""
    info = api(base, "/api/info")
    tid = info["first_text"]
    text = api(base, f"/api/text?id={tid}")["text"]
    page = chromium.new_page(viewport={"width": 1500, "height": height})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(base + "/")
    page.wait_for_selector(f"body[data-ready='1'] #text[data-text-id='{tid}']", timeout=60_000)
    return page, errors, info, tid, text


def test_viewer_in_chromium(chromium, served):
    base, checkpoint = served
    page, errors, info, tid, text = open_viewer(chromium, base, 950)
    spans = page.locator("#text span")
    assert spans.count() == len(text)
    assert page.locator("#text").inner_text() == text

    # 0) one heading (name, size once, language once); the feature fits the text's language (a C
    #    feature on C), and the page opens on the best unit of that feature's ranking
    t = api(base, f"/api/text?id={tid}")
    assert page.inner_text("#text-name") == heading(t)
    if not os.environ.get("UNROLLED_VIEWER_TEXT"):
        assert t["language"] == "c" and t["default_feature"] == "in_comment"
    assert page.input_value("#feature") == t["default_feature"] and t["default_feature"] in t["features"]
    ranked = api(base, f"/api/units?text={tid}&feature={t['default_feature']}&kind=h&top=20")
    top_unit = ranked["best"][0]["unit"]
    assert page.get_attribute("#text", "data-unit") == top_unit == page.inner_text("#focus-name")
    assert page.locator("#ranked li button").all_inner_texts() == [b["unit"] for b in ranked["best"]]
    # the ranking shows the CLI's signed score (report.signed), named by its metric, as `unrolled cells`
    assert [s.strip() for s in page.locator("#ranked li .score").all_inner_texts()] == \
        [f"{ranked['metric']} {b['signed']}" for b in ranked["best"]]
    assert "low inside" not in page.inner_text("#ranked")
    first_layer, first_index = int(top_unit.split(":")[0][1:]), int(top_unit.split(":")[1])
    a = api(base, f"/api/activations?text={tid}&layer={first_layer}&kind=h&units={first_index}")
    probe = list(range(0, len(text), max(1, len(text) // 40)))
    assert backgrounds(page, probe) == [colour(a["units"][0]["values"][i], *a["range"]) for i in probe]

    # 1) pick a unit: the characters take the colours of its values
    H = info["hidden_size"]
    unit = min(5, H - 1)
    page.select_option("#kind", "c")
    page.select_option("#layer", str(info["num_layers"] - 1))
    page.fill("#unit", str(unit))
    page.click("#show-unit")
    name = f"c{info['num_layers'] - 1}:{unit}"
    page.wait_for_selector(f"#text[data-unit='{name}']")
    a = api(base, f"/api/activations?text={tid}&layer={info['num_layers'] - 1}&kind=c&units={unit}")
    values, (lo, hi) = a["units"][0]["values"], a["range"]
    assert backgrounds(page, probe) == [colour(values[i], lo, hi) for i in probe]
    assert len(set(backgrounds(page, probe))) > 5  # coloured, not all white

    # 2) select a span by dragging: units on across it and off around it, and where they fire again.
    #    Which spans select something depends on the model, so ask the API for one first.
    page.select_option("#layer", "0")
    page.select_option("#kind", "h")
    span = None
    for start in range(3, len(text) - 8, 7):
        r = api(base, "/api/select", {"text": tid, "start": start, "end": start + 3, "layer": 0, "kind": "h",
                                      "threshold": 0.3, "pad": 1})
        if r["units"] and len(r["matches"]) > 1 and "\n" not in text[start - 1:start + 4]:
            span = r
            break
    assert span is not None, "no span of three characters selects a unit that fires elsewhere too"
    first, last = spans.nth(span["start"]).bounding_box(), spans.nth(span["end"] - 1).bounding_box()
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] / 2, last["y"] + last["height"] / 2, steps=5)
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2, steps=2)
    page.mouse.up()
    page.wait_for_function("() => document.querySelectorAll('#selected-units button').length > 0", timeout=30_000)
    assert f"span {span['start']}..{span['end']}" in page.inner_text("#selection")
    assert page.locator("#selected-units button").all_inner_texts() == [u["unit"] for u in span["units"]]
    assert page.locator("#matches li").count() == len(span["matches"])
    assert page.locator("#text span.sel").count() == 3
    assert page.locator("#text span.match").count() > 0
    page.evaluate("window.getSelection().removeAllRanges()")

    # 3) rank the units for a feature, click the best: it colours the text (last, for the screenshot)
    page.select_option("#kind", "h")
    page.select_option("#feature", "in_comment")
    page.click("#rank")
    page.wait_for_selector("#ranked li button")
    best = page.locator("#ranked li button").first
    best_name = best.inner_text()
    labels = api(base, f"/api/feature?text={tid}&name=in_comment")["values"]
    page.wait_for_function("() => document.querySelectorAll('#text span.feat').length > 0")
    assert page.locator("#text span.feat").count() == sum(labels)
    best.click()
    page.wait_for_selector(f"#text[data-unit='{best_name}']")

    # 4) hover a character: the model's top-5 guesses for the next one
    at = next(i for i in range(20, len(text)) if not text[i].isspace())  # a newline's box may be empty
    box = spans.nth(at).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#tooltip:not([hidden])")
    tip = page.inner_text("#tooltip")
    top = api(base, f"/api/predictions?text={tid}&start={at}")["positions"][0]["top"]
    assert tip.startswith("after ") and tip.count("%") >= 5 and json.dumps(top[0][0]) in tip

    # 5) sample: the text streams into the page and is what the library samples with that seed
    page.fill("#prime", "int ")
    page.fill("#temperature", "0.9")
    page.fill("#length", "120")
    page.fill("#seed", "3")
    page.click("#sample")
    page.wait_for_selector("#sample-out[data-state='done']", timeout=60_000)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs
    try:
        want = sample(load(checkpoint), length=120, temperature=0.9, prime="int ", seed=3)
    finally:
        torch.set_num_threads(threads)
    assert page.inner_text("#sample-out") == want
    assert page.locator("#saturation svg").count() == info["num_layers"]
    # the saturation plot: left-saturated on x, right-saturated on y (as the CLI's PNG and the paper)
    sat = api(base, f"/api/saturation?text={tid}")
    panels = page.evaluate("""() => [...document.querySelectorAll('#saturation svg')].map((el) => {
      const f = el.querySelector('rect.frame'), n = (a) => Number(f.getAttribute(a));
      return {layer: Number(el.dataset.layer), x: el.dataset.x, y: el.dataset.y,
              xlabel: el.querySelector('.x-label').textContent, ylabel: el.querySelector('.y-label').textContent,
              fx: n('x'), fy: n('y'), fw: n('width'), fh: n('height'),
              dots: [...el.querySelectorAll('circle')].map((c) => [c.dataset.gate, Number(c.dataset.unit),
                                                                   Number(c.getAttribute('cx')), Number(c.getAttribute('cy'))])};
    })""")
    told_apart = 0
    for panel in panels:
        assert (panel["x"], panel["y"]) == ("left", "right")
        assert panel["xlabel"] == "fraction left-saturated (< 0.1)" == sat["axes"]["x"]["label"]
        assert panel["ylabel"] == "fraction right-saturated (> 0.9)" == sat["axes"]["y"]["label"]
        gates = {g["gate"]: g for g in sat["gates"] if g["layer"] == panel["layer"]}
        assert len(panel["dots"]) == sum(len(g["left"]) for g in gates.values())
        for gate, j, cx, cy in panel["dots"]:
            left, right = gates[gate]["left"][j], gates[gate]["right"][j]
            assert (cx - panel["fx"]) / panel["fw"] == pytest.approx(left, abs=1e-6)
            assert (panel["fy"] + panel["fh"] - cy) / panel["fh"] == pytest.approx(right, abs=1e-6)
            told_apart += abs(left - right) > 0.05
    assert told_apart > 0  # some unit whose place would differ with the axes swapped

    shot = Path(os.environ.get("UNROLLED_VIEWER_SCREENSHOT") or ARTIFACTS / "viewer.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # 6) paste a new text and explore it
    pasted = text[:300]
    page.fill("#new-text", pasted)
    page.click("#explore")
    pasted_id = hashlib.sha256(pasted.encode()).hexdigest()[:16]
    page.wait_for_selector(f"#text[data-text-id='{pasted_id}']", timeout=30_000)
    assert spans.count() == len(pasted) and page.inner_text("#text-name").startswith("pasted text")
    # upload a file: read in the browser, sent as text, opened under the file's name
    uploaded = text[100:400]
    page.set_input_files("#upload", files=[{"name": "upload.c", "mimeType": "text/plain",
                                            "buffer": uploaded.encode("utf-8")}])
    page.wait_for_function(f"() => document.getElementById('new-text').value.length === {len(uploaded)}")
    page.click("#explore")
    page.wait_for_selector(f"#text[data-text-id='{hashlib.sha256(uploaded.encode()).hexdigest()[:16]}']")
    assert page.inner_text("#text-name").startswith("upload.c")
    # and a text too large for the server is refused with its sentence, in the status line
    page.fill("#new-text", "a" * (info["limits"]["max_chars"] + 1))
    page.click("#explore")
    page.wait_for_selector("#status.error")
    assert "limit" in page.inner_text("#status"), (page.inner_text("#status"), page.get_attribute("#status", "class"), errors)
    # 7) a server file longer than --max-chars opens at its first characters, said once in the heading
    if "long.c" in [f["name"] for f in api(base, "/api/files")["files"]]:
        long = api(base, "/api/text", {"file": "long.c"})
        assert long["file_chars"] == 8_000 and long["length"] <= 6_000
        page.select_option("#files", "long.c")
        page.click("#load-file")
        page.wait_for_selector(f"#text[data-text-id='{long['id']}']", timeout=30_000)
        assert page.inner_text("#text-name") == f"long.c (first {long['length']:,} characters, C)" == heading(long)
    assert not errors, errors
    page.close()
