"""The viewer's evidence routes in process: /api/attribute and /api/probe equal the library's
calls on the same text, /api/sample with clamps equals unrolled.sample with the same clamps and
seed, and bad input is one JSON sentence with a 4xx status."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from unrolled.charlm.clamp import parse_clamp  # noqa: E402
from unrolled.charlm.sample import sample  # noqa: E402
from unrolled.understand.attribute import attribute  # noqa: E402
from unrolled.understand.probe import probe  # noqa: E402
from unrolled.web.app import create_app  # noqa: E402
from unrolled.web.server import build_explorer  # noqa: E402
from web_model import c_like, tiny_run  # noqa: E402

TEXT = c_like(700, seed=2)


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ex, _ = build_explorer(str(tiny_run()), None, max_chars=2_000)
    with TestClient(create_app(ex), raise_server_exceptions=False) as c:
        yield c, ex, c.post("/api/text", json={"text": TEXT}).json()["id"]
    torch.set_num_threads(threads)


def test_attribute_route_is_the_library_call(setup):
    client, ex, tid = setup
    r = client.get(f"/api/attribute?text={tid}&at=300&window=40")
    assert r.status_code == 200, r.text
    got = r.json()
    want = attribute(ex.model, TEXT, 300, window=40, steps=512, baseline=" ")
    assert got["attributions"] == json.loads(json.dumps(want["attributions"]))
    assert got["completeness_error"] < 0.01 and got["window"] == [261, 301]


def test_probe_route_is_the_library_call(setup):
    client, ex, tid = setup
    r = client.get(f"/api/probe?text={tid}&feature=in_comment&layer=0")
    assert r.status_code == 200, r.text
    want = probe(ex.model, TEXT, "in_comment", layer=0, language="c")
    got = r.json()
    assert got["probe"] == pytest.approx(want["probe"]) and got["best_unit"] == want["best_unit"]
    assert got["selectivity"] == pytest.approx(got["probe"] - got["control"])


def test_sample_route_holds_clamps(setup):
    client, ex, tid = setup
    key = "c" if "c" in ex.keys else "h"
    spec = f"{key}1:3=2.5"
    body = client.get(f"/api/sample?prime=int%20&length=80&seed=3&temperature=0.9&clamp={spec}").text
    pieces = [json.loads(line[6:])["text"] for line in body.splitlines()
              if line.startswith("data: ") and "text" in line]
    want = sample(ex.model, length=80, prime="int ", seed=3, temperature=0.9,
                  clamps=[parse_clamp(spec, ex.model.rnn)], include_prime=False)
    assert "".join(pieces) == want
    free = sample(ex.model, length=80, prime="int ", seed=3, temperature=0.9, include_prime=False)
    assert want != free


@pytest.mark.parametrize("path,status,words", [
    ("/api/attribute?text={tid}&at=100000", 400, "at must be"),
    ("/api/attribute?text={tid}&at=5&window=0", 400, "window"),
    ("/api/attribute?text=nope&at=5", 404, "no text"),
    ("/api/probe?text={tid}&feature=x%3D.*", 400, "unknown feature"),
    ("/api/probe?text={tid}&feature=in_string&layer=7", 404, "layer"),
    ("/api/sample?length=5&clamp=q1:2=1", 400, "the clamp"),
    ("/api/sample?length=5&clamp=c1:2", 400, "UNIT=VALUE"),
])
def test_bad_requests_are_one_sentence(setup, path, status, words):
    client, _, tid = setup
    r = client.get(path.format(tid=tid))
    assert r.status_code == status and words in r.json()["error"]
