"""`unrolled export --html`: the page samples the model in Chromium, from a file, with no network.

Each page is opened from a file:// URL in an offline browser context that also refuses every
request but the file itself, and no other request may be made. The oracle is torch: the page's
`unrolledNextProbs` after a 50-character prime is within 1e-4 of `CharLM.forward`'s softmax for
RNN, LSTM and GRU tiny models and the committed models/linux-lstm-2x128; its greedy text is
`unrolled.sample(..., argmax=True)`'s; the colouring unit's values are torch's state after each
character. The first sampled character's frequencies over 4,000 seeds follow the distribution.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

import unrolled
from unrolled import store
from unrolled.charlm.config import Config, ModelConfig
from unrolled.charlm.model import CharLM
from unrolled.charlm.sample import sample
from unrolled.charlm.text import Vocabulary
from unrolled.cli import main
from unrolled.errors import UserError
from unrolled.export import export_html
from export_models import CHARS, COMMITTED, LINUX_PRIME, tiny


@contextlib.contextmanager
def offline_page(browser, path: Path):
    """The page at `path`, opened from the file in a context with the network off and every other
    request refused; on leaving, no request but the file's may have been made."""
    url = path.resolve().as_uri()
    context = browser.new_context(offline=True)
    requests, errors = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        page.wait_for_function("() => typeof window.unrolledNextProbs === 'function'")
        yield page
        assert errors == [] and requests == [url], (errors, requests)
    finally:
        context.close()


def torch_probs(model, text: str, temperature: float = 1.0) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.tensor([model.vocab.encode(text)]))[0][0, -1].double()
    return (logits / temperature).softmax(-1).numpy()


MODELS = {"rnn": lambda: tiny("rnn", 2, 0), "lstm": lambda: tiny("lstm", 2, 3), "gru": lambda: tiny("gru", 1, 3),
          "linux-lstm-2x128": lambda: unrolled.load(COMMITTED)}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_page_computes_what_torch_computes(chromium, tmp_path, name):
    model = MODELS[name]()
    prime = LINUX_PRIME if name == "linux-lstm-2x128" else "".join(np.random.default_rng(3).choice(list(CHARS), 50))
    export_html(model, tmp_path / "page.html")
    with offline_page(chromium, tmp_path / "page.html") as page:
        probs = np.array(page.evaluate("p => window.unrolledNextProbs(p)", prime))
        np.testing.assert_allclose(probs, torch_probs(model, prime), rtol=0, atol=1e-4)
        start = np.array(page.evaluate("() => window.unrolledNextProbs('')"))  # reads a newline first
        np.testing.assert_allclose(start, torch_probs(model, "\n"), rtol=0, atol=1e-4)
        greedy = sample(model, length=300, argmax=True, prime=prime)
        assert page.evaluate("p => window.unrolledSample(p, 300, 0, 1)", prime) == greedy
        assert page.evaluate("p => window.unrolledSample(p, 300, 1, 2, 1)", prime) == greedy  # top-k 1


def test_sampling_is_seeded_and_follows_the_distribution(chromium, tmp_path):
    model = tiny("lstm", 2, 3)
    export_html(model, tmp_path / "page.html")
    prime = "ab{c;"
    with offline_page(chromium, tmp_path / "page.html") as page:
        draw = "([p, n, t, s]) => window.unrolledSample(p, n, t, s)"
        one = page.evaluate(draw, [prime, 200, 1.0, 7])
        assert one == page.evaluate(draw, [prime, 200, 1.0, 7]) != page.evaluate(draw, [prime, 200, 1.0, 8])
        assert one.startswith(prime) and len(one) == len(prime) + 200 and set(one) <= set(CHARS)
        firsts = {}
        for t, k in ((1.0, None), (0.5, None), (1.0, 3)):
            chars = page.evaluate("([p, t, k]) => Array.from({length: 4000}, (_, s) => "
                                  "window.unrolledSample(p, 1, t, s, k).slice(-1))", [prime, t, k])
            freq = np.array([chars.count(c) for c in model.vocab.symbols]) / len(chars)
            firsts[t, k] = freq
            want = torch_probs(model, prime, t)
            if k is not None:  # the k most likely, renormalised, as unrolled.sample's filter_logits
                want = np.where(want >= np.sort(want)[-k], want, 0) / np.sort(want)[-k:].sum()
            assert np.abs(freq - want).max() < 0.035  # about 4 standard deviations
        # the temperature and top-k are felt, so the checks above can fail
        assert np.abs(firsts[1.0, None] - firsts[0.5, None]).max() > 0.035
        assert np.abs(firsts[1.0, None] - firsts[1.0, 3]).max() > 0.035


def spans(page) -> list:
    return page.evaluate("() => Array.from(document.querySelectorAll('#out span'), "
                         "s => [s.textContent, s.unitValue, s.style.backgroundColor])")


def colour(v: float, scale: float) -> str:
    """The viewer's blue-white-red, as the browser reports a background colour."""
    t = max(-1.0, min(1.0, v / scale))
    w = int(np.floor(255 * (1 - 0.8 * abs(t)) + 0.5))
    return f"rgb(255, {w}, {w})" if t >= 0 else f"rgb({w}, {w}, 255)"


def test_the_controls_sample_stream_stop_and_colour(chromium, tmp_path):
    model = tiny("lstm", 2, 3)
    export_html(model, tmp_path / "page.html", title="tiny <lstm>")
    with offline_page(chromium, tmp_path / "page.html") as page:
        assert page.title() == "tiny <lstm>"
        for field, value in (("prime", "ab{c"), ("seed", "5"), ("temperature", "1"), ("length", "60"), ("unit", "2")):
            page.fill(f"#{field}", value)
        page.select_option("#layer", "1")
        page.select_option("#kind", "c")
        page.click("#go")
        page.wait_for_function("() => !document.getElementById('go').disabled")
        shown = spans(page)
        text = "".join(s[0] for s in shown).replace("\u21b5\n", "\n")
        assert text == page.evaluate("() => window.unrolledSample('ab{c', 60, 1, 5)")
        assert page.inner_text("#status") == "60 of 60 characters, seed 5"
        state, want = None, []  # torch's c of layer 1, unit 2, after each character
        with torch.no_grad():
            for i in model.vocab.encode(text):
                _, state = model(torch.tensor([[i]]), state)
                want.append(float(state[1][1, 0, 2]))
        values = [s[1] for s in shown]
        np.testing.assert_allclose(values, want, rtol=0, atol=1e-5)
        scale = max(1.0, max(abs(v) for v in values))
        assert [s[2] for s in shown] == [colour(v, scale) for v in values]
        page.fill("#length", "1000000")  # streams: shown while still writing, and stop ends it
        page.click("#go")
        page.wait_for_function("() => document.querySelectorAll('#out span').length > 100 "
                               "&& document.getElementById('go').disabled")
        page.click("#stop")
        page.wait_for_function("() => !document.getElementById('go').disabled")
        written = int(page.inner_text("#status").split()[0])
        assert 100 < written < 1_000_000 and len(spans(page)) == written + 4
        page.fill("#prime", "xyz")
        page.click("#go")
        assert "a character the model never saw" in page.inner_text("#status")


def test_cli_writes_a_page_that_fetches_nothing(tmp_path, capsys):
    model = tiny("gru", 2, 0)
    ck = tmp_path / "ck"
    store.save(ck, {"config": Config(model=model.config).to_dict(), "vocab": model.vocab.to_json(), "step": 1},
               model.state_dict())
    assert main(["export", str(ck), "--html", str(tmp_path / "page.html")]) == 0
    assert "gru, 2 x 5, vocabulary 14" in capsys.readouterr().out
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in page and "<title>unrolled sampler: ck</title>" in page
    assert "http:" not in page and "https:" not in page and " src=" not in page


def test_a_byte_level_model_has_no_page(tmp_path):
    model = CharLM(Vocabulary(list(b"abc\n"), byte_level=True), ModelConfig(cell="gru", hidden_size=5, num_layers=1))
    with pytest.raises(UserError, match="export it with --onnx instead"):
        export_html(model, tmp_path / "page.html")
    assert not (tmp_path / "page.html").exists()
