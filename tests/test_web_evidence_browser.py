"""The viewer's evidence panels in Chromium (Playwright), on a real `unrolled serve` process:
clamp a unit and resample (the page's two samples are the library's with and without the clamp,
same seed), click a character to colour the text before it by its integrated gradients (the
colours are the API's numbers), and fit a probe (the table shows the API's numbers; its best
unit colours the text). A screenshot goes to test-artifacts/viewer-evidence.png."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

playwright = pytest.importorskip("playwright.sync_api")

from unrolled.charlm.clamp import parse_clamp  # noqa: E402
from unrolled.charlm.run import load  # noqa: E402
from unrolled.charlm.sample import sample  # noqa: E402
from test_web_browser import api, backgrounds, colour, open_viewer  # noqa: E402
from web_model import c_like, serve_process, tiny_run  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("evidence-browser")
    (d / "example.c").write_text(c_like(1_200, seed=2), encoding="utf-8")
    checkpoint = str(tiny_run())
    with serve_process(checkpoint, "--text", str(d), "--max-chars", "6000") as url:
        yield url, checkpoint


def test_evidence_panels_in_chromium(chromium, served):  # chromium: the fixture in conftest.py
    base, checkpoint = served
    page, errors, info, tid, text = open_viewer(chromium, base, 1100)

    # 1) clamp and resample: the same seed, free and with the unit held, as the library writes them
    key = "c" if any(k["key"] == "c" for k in info["kinds"]) else "h"
    spec = f"{key}{info['num_layers'] - 1}:3=2.5"
    page.fill("#prime", "int ")
    page.fill("#temperature", "0.9")
    page.fill("#length", "100")
    page.fill("#seed", "5")
    page.fill("#clamps", spec)
    page.click("#clamp-sample")
    page.wait_for_function("() => !document.getElementById('clamp-sample').disabled && "
                           "document.getElementById('sample-out').dataset.state === 'done'", timeout=60_000)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs
    try:
        model = load(checkpoint)
        held = sample(model, length=100, temperature=0.9, prime="int ", seed=5, clamps=[parse_clamp(spec, model.rnn)])
        free = sample(model, length=100, temperature=0.9, prime="int ", seed=5)
    finally:
        torch.set_num_threads(threads)
    assert page.inner_text("#clamp-out") == held and page.inner_text("#sample-out") == free and held != free
    # "hold the unit shown" writes the focused unit with the value
    page.fill("#clamp-value", "-1.5")
    page.click("#hold-focus")
    assert page.input_value("#clamps") == f"{page.get_attribute('#text', 'data-unit')}=-1.5"
    # a bad clamp is one sentence in the status line
    page.fill("#clamps", "q9:1=2")
    page.click("#clamp-sample")
    page.wait_for_selector("#status.error")
    assert "the clamp" in page.inner_text("#status")

    # 2) click a character: the window before it takes the colours of its integrated gradients
    at = next(i for i in range(300, len(text) - 1) if not text[i].isspace())
    page.locator("#text span").nth(at).click()
    page.wait_for_selector(f"#text[data-attributed='{at}']", timeout=60_000)
    r = api(base, f"/api/attribute?text={tid}&at={at}&window=100")
    m = max(abs(e["ig"]) for e in r["attributions"])
    pos = [e["at"] for e in r["attributions"]][::7]
    ig = {e["at"]: e["ig"] for e in r["attributions"]}
    assert backgrounds(page, pos) == [colour(ig[i], -m, m) for i in pos]
    assert len(set(backgrounds(page, pos))) > 3
    assert backgrounds(page, [r["window"][0] - 1]) == ["rgba(0, 0, 0, 0)"]  # before the window: uncoloured
    assert page.locator("#text span.attr-at").count() == 1
    assert "completeness error" in page.inner_text("#attr-summary")
    assert page.locator("#attr-top li").count() == min(8, len(r["attributions"]))

    # 3) a probe: the table shows the API's numbers; its best unit is a button that colours the text
    page.select_option("#probe-feature", "in_comment")
    page.select_option("#probe-layer", "0")
    page.click("#probe")
    page.wait_for_selector("#probe-result[data-state='done']", timeout=60_000)
    p = api(base, f"/api/probe?text={tid}&feature=in_comment&layer=0")
    assert page.inner_text("#probe-result tr[data-row='probe'] td:nth-child(2)") == f"AUC {p['probe']:.4f}"
    assert page.inner_text("#probe-result tr[data-row='control task'] td:nth-child(2)") == f"AUC {p['control']:.4f}"
    page.click("#probe-result tr[data-row='best unit'] button")
    page.wait_for_selector(f"#text[data-unit='{p['best_unit']['unit']}']")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-evidence.png"))
    assert not errors, errors
    page.close()
