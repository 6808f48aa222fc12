"""A character model as one self-contained web page that samples it in the browser.

    page.html  =  static/page.html  with  static/sampler.css, static/sampler.js  inlined
                  and the model: a JSON header (cell, sizes, vocabulary, where each tensor is)
                  and every tensor as float32, little-endian, in one base64 string

The page needs no server, no network and no build step: open the file. Its Content-Security-Policy
allows no request at all (`default-src 'none'`), so it cannot fetch anything even by mistake.
`static/sampler.js` runs the same forward pass as `CharLM.forward` in eval mode (weights in
torch's layout and gate order, arithmetic in float64), samples as `unrolled sample` does
(temperature, top-k; with a seeded PRNG of its own, so a seed gives the same text in every browser
but not the text `unrolled sample` gives) and colours each character by a chosen unit's value.
For tests it exposes `window.unrolledNextProbs(prefix)` and
`window.unrolledSample(prime, length, temperature, seed, topK)` (tests/test_export_page.py).
"""
from __future__ import annotations

import base64
import html
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from unrolled.errors import UserError
from unrolled.export.weights import Exported, collect, write_file


def _tensors(m: Exported) -> dict[str, np.ndarray]:
    """The tensors the page reads, by name, in torch's layout: weights (rows, cols), biases (n,)."""
    out = {} if m.one_hot else {"embedding": m.embedding}
    for k, layer in enumerate(m.layers):
        out.update({f"weight_ih_l{k}": layer.weight_ih, f"weight_hh_l{k}": layer.weight_hh,
                    f"bias_ih_l{k}": layer.bias_ih, f"bias_hh_l{k}": layer.bias_hh})
    out.update({"head_weight": m.head_weight, "head_bias": m.head_bias})
    return out


def model_json(model, title: str = "") -> str:
    """The model as the page's JSON: facts, an index of the tensors and their float32 bytes in base64."""
    m = collect(model, "unrolled export --html")
    if m.byte_level:
        raise UserError("unrolled export --html reads and writes characters, and this model reads bytes; "
                        "export it with --onnx instead")
    index, chunks, offset = {}, [], 0
    for name, a in _tensors(m).items():
        a = np.ascontiguousarray(a, dtype="<f4")
        index[name] = {"offset": offset, "shape": list(a.shape)}
        chunks.append(a.tobytes())
        offset += a.size
    header = {"format": "unrolled-page", "version": 1, "title": title, "cell": m.cell,
              "nonlinearity": m.nonlinearity, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
              "one_hot": m.one_hot, "symbols": m.symbols, "parameters": int(model.num_parameters()),
              "tensors": index, "data": base64.b64encode(b"".join(chunks)).decode("ascii")}
    # Inside <script>, "</script>" or "<!--" in a symbol would end or confuse the element: no "<" at all.
    return json.dumps(header, ensure_ascii=True).replace("<", "\\u003c")


def _static(name: str) -> str:
    return resources.files("unrolled.export").joinpath("static", name).read_text(encoding="utf-8")


def render(model, title: str = "") -> str:
    """The whole page, as text."""
    data = model_json(model, title)
    page = _static("page.html").replace("{{TITLE}}", html.escape(title or "unrolled sampler"))
    page = page.replace("/*{{STYLE}}*/", _static("sampler.css")).replace("/*{{SCRIPT}}*/", _static("sampler.js"))
    return page.replace("{{MODEL}}", data)  # last: the model's symbols are never searched for a placeholder


def export_html(model, path: str | os.PathLike, title: str = "") -> Path:
    """Write the page for `model` (a CharLM) at `path`, atomically; returns the path."""
    return write_file(path, render(model, title).encode("utf-8"), "--html")
