"""The viewer's JSON API, in process (every route, good and bad input) and on loopback (a real
`unrolled serve` process under a bounded concurrent load). Oracles: the model's readable path
run by hand over the whole text, its softmax, and `unrolled.sample.sample` with the same seed."""
from __future__ import annotations

import json
import math
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from unrolled import cli  # noqa: E402
from unrolled.charlm.run import load  # noqa: E402
from unrolled.charlm.sample import sample  # noqa: E402
from unrolled.web.app import create_app  # noqa: E402
from unrolled.web.explorer import MAX_UNITS, Explorer  # noqa: E402
from unrolled.web.server import build_explorer  # noqa: E402
from web_model import c_like, serve_process, tiny_run  # noqa: E402

TEXT = c_like(700, seed=2)  # shorter than a recording stream: one exact pass


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run()


@pytest.fixture(scope="module")
def texts_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    (d / "a.c").write_text(TEXT, encoding="utf-8")
    (d / "sub").mkdir()
    (d / "sub" / "b.c").write_text(c_like(3_000, seed=3), encoding="utf-8")
    (tmp_path_factory.getbasetemp() / "secret.txt").write_text("not for clients", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def explorer(run, texts_dir, one_thread):
    ex, _ = build_explorer(str(run), str(texts_dir), max_chars=2_000)
    return ex


@pytest.fixture(scope="module")
def client(explorer):
    with TestClient(create_app(explorer), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def fuzz_client(explorer):
    """Its own Explorer over the same model: the texts fuzzing adds never evict the others'."""
    ex = Explorer(explorer.model, max_chars=2_000)
    with TestClient(create_app(ex), raise_server_exceptions=False) as c:
        yield c, ex.add_text(TEXT)["id"]


@pytest.fixture(scope="module")
def tid(client):
    r = client.post("/api/text", json={"text": TEXT, "name": "test.c"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def trace(explorer):
    """The oracle: the readable path over the whole text, every state and gate, float64."""
    model = explorer.model
    ids = torch.tensor([model.vocab.index[c] for c in TEXT]).unsqueeze(0)  # (1, N)
    model64 = load(explorer.model.checkpoint_path).double()
    with torch.no_grad():
        out, _, tr = model64.rnn.readable(model64.embed(ids), record=True)
        logits = model64.head(out)  # (1, N, V)
    states = {f"{k}{l}": tr[l][k][0].numpy() for l in range(len(tr)) for k in tr[l]}  # (N, H) each
    return states, torch.softmax(logits[0], -1).numpy()  # (N, V)


def error_of(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert isinstance(msg, str) and len(msg) > 10 and "Traceback" not in msg
    return msg


# --- the page and its static files ---------------------------------------------------------------
def test_page_and_static_files_offline(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert '/static/viewer.js' in r.text and '/static/viewer.css' in r.text
    for name, kind in (("viewer.js", "javascript"), ("viewer.css", "css")):
        s = client.get(f"/static/{name}")
        assert s.status_code == 200 and kind in s.headers["content-type"]
    # Nothing the page loads comes from elsewhere: no absolute URL in any shipped file, except
    # the SVG namespace name (an identifier, never fetched).
    for name in ("index.html", "viewer.js", "viewer.css"):
        body = client.get(f"/static/{name}").text
        for scheme in ("http://", "https://", "//cdn"):
            hits = [line for line in body.splitlines() if scheme in line and "www.w3.org/2000/svg" not in line]
            assert not hits, (name, hits)


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/..%2f..%2fetc%2fpasswd",
                                  "/static/%2e%2e/app.py", "/static/../app.py", "/static//etc/passwd",
                                  "/static/nothing.js"])
def test_static_path_traversal_is_refused(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500
    assert "root:" not in r.text and "import" not in r.text


# --- info, texts and files -----------------------------------------------------------------------
def test_info(client, explorer):
    info = client.get("/api/info").json()
    assert (info["cell"], info["num_layers"], info["hidden_size"]) == ("lstm", 2, 24)
    assert [k["key"] for k in info["kinds"]] == ["h", "c", "i", "f", "g", "o"]
    assert {"in_comment", "in_string", "bracket_depth"} <= {f["name"] for f in info["features"]}
    assert info["limits"]["max_chars"] == 2_000
    assert info["metrics"]["best_val_bpc"] > 0 and info["config"]["hidden_size"] == 24
    assert client.get("/api/features").json()["features"] == info["features"]


def test_text_round_trip_and_ids(client, tid):
    again = client.post("/api/text", json={"text": TEXT}).json()
    assert again["id"] == tid and again["length"] == len(TEXT)  # content-addressed
    t = client.get(f"/api/text?id={tid}").json()
    assert t["text"] == TEXT and t["language"] == "c"
    assert tid in [x["id"] for x in client.get("/api/texts").json()["texts"]]
    error_of(client.get("/api/text?id=0123456789abcdef"), 404)
    error_of(client.get("/api/text"), 400)


def test_files_listed_and_loaded_by_name_only(client, texts_dir):
    files = [f["name"] for f in client.get("/api/files").json()["files"]]
    assert files == ["a.c", "sub/b.c"]
    r = client.post("/api/text", json={"file": "sub/b.c"}).json()
    # A long file is cut, not refused; the name stays the file's and file_chars says it was cut
    # (so the page's heading says the name and the size once each).
    assert r["name"] == "sub/b.c" and r["length"] <= 2_000 and r["file_chars"] == 3_000
    assert client.post("/api/text", json={"file": "a.c"}).json()["file_chars"] is None
    assert client.get(f"/api/text?id={r['id']}").json()["text"].endswith("\n")


@pytest.mark.parametrize("name", ["../secret.txt", "/etc/passwd", "sub/../../secret.txt", "sub", "",
                                  "a.c/../../secret.txt", "%2e%2e/secret.txt", "C:\\Windows\\win.ini"])
def test_file_parameter_path_traversal(client, name):
    msg = error_of(client.post("/api/text", json={"file": name}), 404)
    assert "choose one of" in msg


@pytest.mark.parametrize("body,status,words", [
    ({"text": "x" * 2_001}, 413, "limit of 2,000"),
    ({"text": ""}, 400, "empty"),
    ({"text": "caf\u00e9 \u2603"}, 400, "never saw"),
    ({"text": 42}, 400, "must be a string"),
    ({"name": "no text"}, 400, "needs the field 'text'"),
    ({"file": 3}, 400, "must be a string"),
])
def test_bad_texts(client, body, status, words):
    assert words in error_of(client.post("/api/text", json=body), status)


def test_lone_surrogates_never_break_an_answer(client):
    r = client.post("/api/text", content=b'{"text": "int a;\\n", "name": "x\\ud800y"}')
    assert r.status_code == 200 and r.json()["name"] == "x?y"
    error_of(client.post("/api/text", content=b'{"text": "int \\ud800"}'), 400)
    error_of(client.post("/api/select", content=b'{"text": "\\udfff", "start": 0, "end": 1}'), 404)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["text", "start", "end", "threshold", "kind", "layer", "pad", "top",
                                             "file", "name"]),
                            st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                                      st.floats(allow_nan=True), st.text(max_size=30), st.just("TID"),
                                      st.lists(st.integers(), max_size=3)), max_size=8),
       route=st.sampled_from(["/api/text", "/api/select"]))
def test_any_json_body_gets_an_answer_not_a_500(fuzz_client, body, route):
    c, fuzz_tid = fuzz_client
    body = {k: fuzz_tid if v == "TID" and k == "text" and route == "/api/select" else v for k, v in body.items()}
    r = c.post(route, content=json.dumps(body).encode())
    assert r.status_code < 500, (body, r.text)
    assert r.status_code == 200 or r.json()["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["/api/activations", "/api/predictions", "/api/units", "/api/feature",
                              "/api/saturation", "/api/bits", "/api/text", "/api/sample"]),
       params=st.dictionaries(st.sampled_from(["text", "id", "layer", "kind", "units", "start", "end", "k", "feature",
                                               "name", "top", "prime", "length", "temperature", "top_k", "seed"]),
                              st.one_of(st.sampled_from(["TID", "0", "-1", "1e9", "nan", "inf", "h", "c", "3,4",
                                                         "in_comment", "", "10"]), st.text(max_size=12)),
                              max_size=6))
def test_any_query_gets_an_answer_not_a_500(fuzz_client, route, params):
    c, fuzz_tid = fuzz_client
    params = {k: fuzz_tid if v == "TID" else v for k, v in params.items()}
    if route == "/api/sample":
        params["length"] = "5" if params.get("length", "").isdigit() else params.get("length", "5")
    r = c.get(route + "?" + urllib.parse.urlencode(params))
    assert r.status_code < 500, (route, params, r.text)
    if r.status_code != 200:
        assert r.json()["error"]


@pytest.mark.parametrize("raw,words", [(b"{bad json", "not valid JSON"), (b"[1, 2]", "JSON object"),
                                       (b"\xff\xfe", "not valid JSON"), (b"", "not valid JSON"),
                                       (b"[" * 20_000 + b"]" * 20_000, "too deeply")])
def test_malformed_json(client, raw, words):
    for route in ("/api/text", "/api/select"):
        r = client.post(route, content=raw, headers={"content-type": "application/json"})
        assert words in error_of(r, 400)


def test_oversized_body_is_refused_before_reading(client):
    big = json.dumps({"text": "a" * 200_000}).encode()  # over 4 bytes a character + 64 KiB
    assert "bytes" in error_of(client.post("/api/text", content=big), 413)


# --- activations ---------------------------------------------------------------------------------
def test_activations_equal_the_readable_path(client, tid, trace):
    states, _ = trace
    for layer, kind, units in ((0, "h", [0, 5]), (1, "c", [23]), (1, "f", [3, 4, 7]), (0, "g", [1])):
        r = client.get(f"/api/activations?text={tid}&layer={layer}&kind={kind}&units={','.join(map(str, units))}")
        assert r.status_code == 200, r.text
        a = r.json()
        assert [u["unit"] for u in a["units"]] == [f"{kind}{layer}:{u}" for u in units]
        for u, row in zip(units, a["units"]):
            want = states[f"{kind}{layer}"][:, u]
            got = np.array(row["values"])
            assert got.shape == (len(TEXT),)
            # float16 storage: about 3 significant digits
            np.testing.assert_allclose(got, want, atol=2e-3 * max(1.0, np.abs(want).max()))
    assert client.get(f"/api/activations?text={tid}&kind=f&units=0").json()["range"] == [0.0, 1.0]
    assert client.get(f"/api/activations?text={tid}&kind=h&units=0").json()["range"] == [-1.0, 1.0]


@pytest.mark.parametrize("query,status,words", [
    ("layer=0&kind=h&units=24", 404, "unknown unit"),
    ("layer=0&kind=h&units=-1", 404, "unknown unit"),
    ("layer=2&kind=h&units=0", 404, "unknown layer"),
    ("layer=x&kind=h&units=0", 400, "whole number"),
    ("layer=0&kind=q&units=0", 400, "unknown state kind"),
    ("layer=0&kind=h&units=a,b", 400, "whole numbers"),
    ("layer=0&kind=h&units=", 400, "at least one unit"),
    ("layer=0&kind=h", 400, "units is missing"),
    ("layer=0&kind=h&units=" + ",".join(["1"] * (MAX_UNITS + 1)), 413, "at most"),
])
def test_activations_bad_input(client, tid, query, status, words):
    assert words in error_of(client.get(f"/api/activations?text={tid}&{query}"), status)


def test_unknown_text_id(client):
    for path in ("/api/activations?text=nope&units=0", "/api/predictions?text=nope&start=0",
                 "/api/units?text=nope&feature=in_comment", "/api/saturation?text=nope", "/api/bits?text=nope",
                 "/api/feature?text=nope&name=in_comment"):
        assert "no text with id" in error_of(client.get(path), 404)


# --- predictions and bits per character ----------------------------------------------------------
def test_predictions_are_the_model_softmax(client, tid, trace, explorer):
    _, probs = trace
    chars = explorer.chars
    r = client.get(f"/api/predictions?text={tid}&start=10&end=14&k=5").json()
    assert [p["pos"] for p in r["positions"]] == [10, 11, 12, 13]
    for p in r["positions"]:
        order = np.argsort(-probs[p["pos"]])[:5]
        assert [c for c, _ in p["top"]] == [chars[v] for v in order]
        np.testing.assert_allclose([q for _, q in p["top"]], probs[p["pos"]][order], atol=1e-4)
        assert p["next"] == TEXT[p["pos"] + 1]
        assert p["p_next"] == pytest.approx(probs[p["pos"], chars.index(p["next"])], abs=1e-4)
    last = client.get(f"/api/predictions?text={tid}&start={len(TEXT) - 1}").json()["positions"][0]
    assert last["next"] is None and last["p_next"] is None
    bpc = client.get(f"/api/bits?text={tid}").json()["bits_per_char"]
    ids = [chars.index(c) for c in TEXT]
    want = -np.mean([math.log2(probs[t, ids[t + 1]]) for t in range(len(TEXT) - 1)])
    assert bpc == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize("query,status", [("start=5&end=5", 400), ("start=-1", 400), (f"start={len(TEXT)}", 400),
                                          ("start=0&end=3000", 400), ("start=0&k=0", 400), ("start=0&k=99", 400),
                                          ("end=3", 400), ("start=1.5", 400)])
def test_predictions_bad_input(client, tid, query, status):
    error_of(client.get(f"/api/predictions?text={tid}&{query}"), status)


# --- features, ranked units ----------------------------------------------------------------------
def test_ranked_units_are_sorted_and_scored(client, tid, trace, explorer):
    states, _ = trace
    r = client.get(f"/api/units?text={tid}&feature=in_comment&kind=c&top=6").json()
    assert r["metric"] == "auc" and 0 < r["positives"] < 1 and len(r["best"]) == 6
    strengths = [abs(b["score"] - 0.5) for b in r["best"]]
    assert strengths == sorted(strengths, reverse=True)
    labels = np.array(client.get(f"/api/feature?text={tid}&name=in_comment").json()["values"], dtype=bool)
    best = r["best"][0]
    x = states[f"c{best['layer']}"][:, best["index"]]
    pos, neg = x[labels], x[~labels]
    auc = ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    assert best["score"] == pytest.approx(auc, abs=0.01)  # float16 storage may tie a few values
    one = client.get(f"/api/units?text={tid}&feature=bracket_depth&kind=h&layer=1&top=3").json()
    assert one["metric"] == "r" and all(b["layer"] == 1 for b in one["best"])


@pytest.mark.parametrize("query,status,words", [
    ("feature=nope", 400, "unknown feature"),
    ("feature=x%3D.*", 400, "unknown feature"),  # a regular expression is not compiled for a client
    ("feature=os%3Asystem", 400, "unknown feature"),  # nor is a module imported
    ("feature=in_comment&top=0", 400, "top must"),
    ("feature=in_comment&layer=5", 404, "unknown layer"),
    ("feature=in_comment&kind=zz", 400, "unknown state kind"),
    ("", 400, "feature is missing"),
])
def test_units_bad_input(client, tid, query, status, words):
    assert words in error_of(client.get(f"/api/units?text={tid}&{query}"), status)


def test_ranked_units_carry_the_signed_score_of_the_cli(client, tid, explorer, run, tmp_path, capsys):
    """The score the page shows is `unrolled cells`' (report.signed: the strength max(AUC, 1 - AUC)
    or |r| with the direction's sign), not the raw AUC."""
    from unrolled.understand import search
    from unrolled.understand.report import signed

    for feature, kind in (("in_comment", "h"), ("in_comment", "c"), ("bracket_depth", "h")):
        r = client.get(f"/api/units?text={tid}&feature={feature}&kind={kind}&top=8").json()
        # Exactly the CLI's function over the library's ranking of the same recorded values.
        entry = explorer.entry(tid)
        values, names = explorer.recording(entry, kind).units(keys=(kind,), layers=range(explorer.num_layers))
        lib = search.rank_units(values, names, {feature: explorer.feature_values(entry, feature)}, top=8)[feature]
        assert [(b["unit"], b["signed"]) for b in r["best"]] == [(u["unit"], signed(u)) for u in lib["best"]]
        for b in r["best"]:
            assert float(b["signed"]) == pytest.approx(b["signed_score"], abs=5e-4)
            assert b["signed_score"] == pytest.approx(b["score"] if r["metric"] == "r" else
                                                      b["sign"] * max(b["score"], 1 - b["score"]))
            assert (b["signed_score"] < 0) == (b["score"] < (0.5 if r["metric"] == "auc" else 0.0))

    # And what `unrolled cells` prints for the same text and feature: the same units with the same
    # signed scores (the CLI records in float32, the viewer keeps float16: a few ties may differ).
    f = tmp_path / "same.c"
    f.write_text(TEXT, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["cells", str(run), str(f), "--feature", "in_comment", "--states", "h", "--top", "5",
                     "--out", str(tmp_path / "cells.html")]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("in_comment "))
    words = line.replace(",", " ").split()[2:]  # unit score unit score ...
    printed = dict(zip(words[0::2], words[1::2]))
    assert len(printed) == 5
    r = client.get(f"/api/units?text={tid}&feature=in_comment&kind=h&top=48").json()
    shown = {b["unit"]: b["signed"] for b in r["best"]}
    for unit, score in printed.items():
        assert shown[unit][0] == score[0]  # the same sign
        assert float(shown[unit]) == pytest.approx(float(score), abs=0.01)


def test_feature_never_true_says_so(client):
    t = client.post("/api/text", json={"text": "int a;\nint b;\n"}).json()["id"]
    r = client.get(f"/api/units?text={t}&feature=in_comment").json()
    assert r["best"] == [] and "never true" in r["note"]


@pytest.mark.parametrize("text,language,default", [
    (TEXT, "c", "in_comment"),
    # (only characters the tiny model knows: no "m", ".", ":")
    ("def f(x)\n    return x + 1\n\n" * 5, "python", "in_comment"),
    ('the dog sat on the rug and "it is big" said the cat\n' * 3, "prose", "in_quotes"),
])
def test_the_default_feature_fits_the_language(client, text, language, default):
    from unrolled.understand.features import DEFAULTS
    t = client.post("/api/text", json={"text": text}).json()
    assert t["language"] == language and t["features"] == list(DEFAULTS[language])
    assert t["default_feature"] == default == DEFAULTS[language][0]
    again = client.get(f"/api/text?id={t['id']}").json()
    assert again["default_feature"] == default and again["features"] == t["features"]
    if language == "c":
        assert "in_quotes" not in t["features"]  # a prose feature is never the default on code


# --- select and match ----------------------------------------------------------------------------
def test_select_and_match_follow_the_definition(client, tid, trace):
    states, _ = trace
    values = states["h1"]  # (N, H)
    th = 0.2
    found = 0
    for start in range(5, len(TEXT) - 10, 37):
        end = start + 3
        r = client.post("/api/select", json={"text": tid, "start": start, "end": end, "threshold": th,
                                             "layer": 1, "kind": "h", "pad": 1})
        assert r.status_code == 200, r.text
        r = r.json()
        on = (values[start:end] > th).all(0) & (values[start - 1] <= th) & (values[end] <= th)
        # Values near the threshold may fall either side after float16 rounding: compare the rest.
        clear = np.abs(values[start - 1:end + 1] - th).min(0) > 2e-3
        got = np.zeros(values.shape[1], dtype=bool)
        got[[u["index"] for u in r["units"]]] = True
        assert (got[clear] == on[clear]).all()
        for m in r["matches"]:
            assert m["snippet"] == TEXT[m["start"]:m["end"]][:80]
            assert m["intersection"] == len(r["units"])
        found += len(r["units"]) > 0 and len(r["matches"]) > 0
    assert found > 0  # some span selects units that fire elsewhere too


@pytest.mark.parametrize("body,status,words", [
    ({"start": 5, "end": 5}, 400, "non-empty"),
    ({"start": 5, "end": 99_999}, 400, "within"),
    ({"start": "5", "end": 9}, 400, "whole number"),
    ({"start": 5, "end": 9, "threshold": "high"}, 400, "a number"),
    ({"start": 5, "end": 9, "threshold": True}, 400, "a number"),
    ({"start": 5, "end": 9, "pad": 500}, 400, "pad must"),
    ({"start": 5, "end": 9, "layer": 9}, 404, "unknown layer"),
    ({"start": 5, "end": 9, "kind": "x"}, 400, "unknown state kind"),
    ({"end": 9}, 400, "needs the field 'start'"),
])
def test_select_bad_input(client, tid, body, status, words):
    assert words in error_of(client.post("/api/select", json={"text": tid, **body}), status)


# --- saturation ----------------------------------------------------------------------------------
def test_saturation_fractions(client, tid, trace):
    states, _ = trace
    s = client.get(f"/api/saturation?text={tid}").json()
    assert sorted((g["gate"], g["layer"]) for g in s["gates"]) == [(g, l) for g in "fio" for l in (0, 1)]
    for g in s["gates"]:
        v = states[f"{g['gate']}{g['layer']}"]
        # measured in float32 (the oracle is float64): at most one value may sit on the line
        np.testing.assert_allclose(g["left"], (v < 0.1).mean(0), atol=1.01 / len(TEXT))
        np.testing.assert_allclose(g["right"], (v > 0.9).mean(0), atol=1.01 / len(TEXT))


def test_saturation_axes_are_the_clis_and_the_papers(client, tid):
    """Left-saturated on x, right-saturated on y, as `unrolled saturation --png` draws it
    (render.saturation_png) and Karpathy, Johnson and Fei-Fei 2015 (Fig. 3)."""
    import inspect

    from unrolled.understand import render

    axes = client.get(f"/api/saturation?text={tid}").json()["axes"]
    assert axes["x"]["field"] == "left" and axes["y"]["field"] == "right"
    png = inspect.getsource(render.saturation_png)
    assert "ax.scatter(s[\"left\"], s[\"right\"]" in png  # the CLI: left on x
    assert f'ax.set_xlabel("{axes["x"]["label"]}")' in png and f'ax.set_ylabel("{axes["y"]["label"]}")' in png
    js = client.get("/static/viewer.js").text
    assert "g[ax.field]" in js and "g[ay.field]" in js  # the page plots what the API names (checked in Chromium too)


@pytest.mark.parametrize("cell,gate", [("gru", "z"), ("rnn", None)])
def test_other_cells(cell, gate, one_thread):
    ex, tid = build_explorer(str(tiny_run(cell, steps=20)), None, 1_000)
    with TestClient(create_app(ex), raise_server_exceptions=False) as c:
        info = c.get("/api/info").json()
        assert [k["key"] for k in info["kinds"]] == {"gru": ["h", "r", "z", "n"], "rnn": ["h"]}[cell]
        assert len(c.get(f"/api/activations?text={tid}&layer=1&kind=h&units=3").json()["units"][0]["values"]) == 1_000
        s = c.get(f"/api/saturation?text={tid}").json()
        if gate is None:
            assert s["gates"] == [] and "no gates" in s["note"]
            assert "unknown state kind" in error_of(c.get(f"/api/activations?text={tid}&kind=c&units=0"), 400)
        else:
            assert sorted(g["gate"] for g in s["gates"]) == ["r", "r", "z", "z"]
            a = c.get(f"/api/activations?text={tid}&layer=0&kind={gate}&units=0").json()
            assert a["range"] == [0.0, 1.0] and all(0 <= v <= 1 for v in a["units"][0]["values"])


# --- sampling, streamed --------------------------------------------------------------------------
def sse_text(body: str) -> tuple[str, dict]:
    text, end = "", None
    for event in body.strip().split("\n\n"):
        lines = event.split("\n")
        data = json.loads(lines[-1][len("data: "):])
        if lines[0] == "event: end":
            end = data
        else:
            text += data["text"]
    return text, end


def test_sample_streams_what_sample_gives(client, explorer):
    with client.stream("GET", "/api/sample?prime=static%20int&length=60&temperature=0.7&seed=5") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    text, end = sse_text(body)
    want = sample(explorer.model, length=60, temperature=0.7, prime="static int", seed=5, include_prime=False)
    assert text == want and end == {"length": 60}


@pytest.mark.parametrize("query,words", [
    ("temperature=-1", "--temperature"), ("temperature=hot", "a number"), ("length=0", "--length"),
    ("length=100000", "limit"), ("prime=%E2%98%83", "never saw"), ("top_k=0", "--top-k"), ("seed=-3", "--seed"),
])
def test_sample_bad_input(client, query, words):
    assert words in error_of(client.get(f"/api/sample?{query}"), 400)


# --- routes, methods, hosts ----------------------------------------------------------------------
def test_unknown_route_and_method(client):
    assert "no such page" in error_of(client.get("/api/nothing"), 404)
    assert "not allowed" in error_of(client.delete("/api/text"), 405)
    assert "not allowed" in error_of(client.get("/api/select"), 405)


def test_only_local_host_names_are_served(explorer):
    with TestClient(create_app(explorer, allowed_hosts=["127.0.0.1", "localhost"]),
                    base_url="http://localhost") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 400


def test_every_route_and_flag_is_documented(explorer):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "viewer.md").read_text(encoding="utf-8")
    for route in create_app(explorer).routes:
        if route.path.startswith("/api/"):
            for method in sorted(route.methods - {"HEAD"}):
                assert f"`{method} {route.path}`" in doc, f"{method} {route.path} is missing from docs/viewer.md"
    parser = cli.build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    for action in serve._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in doc, f"serve {flag} is missing from docs/viewer.md"


# --- the command line ----------------------------------------------------------------------------
def test_serve_help_says_why_localhost(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "127.0.0.1" in out and "no login" in out


@pytest.mark.parametrize("args,words", [
    (["serve", "no/such/run"], "does not exist"),
    (["serve", "RUN", "--text", "no/such.txt"], "--text no/such.txt does not exist"),
    (["serve", "RUN", "--port", "70000"], "--port must be between"),
    (["serve", "RUN", "--max-chars", "0"], "--max-chars"),
])
def test_serve_bad_arguments(capsys, run, args, words):
    args = [str(run) if a == "RUN" else a for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled: error: ") and words in err and "Traceback" not in err


def test_serve_without_the_web_extra(capsys, monkeypatch, run):
    monkeypatch.delitem(sys.modules, "unrolled.web.server", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert cli.main(["serve", str(run)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'unrolled[web]'" in err and "uvicorn" in err


def test_serve_port_in_use(capsys, run, one_thread):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert cli.main(["serve", str(run), "--port", str(port)]) == 2
    assert "already in use" in capsys.readouterr().err


# --- a real server on loopback under several clients at once -------------------------------------
@pytest.fixture(scope="module")
def server(run, texts_dir):
    with serve_process(str(run), "--text", str(texts_dir / "a.c")) as url:
        yield url


def fetch(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_abandoned_streams_leave_the_server_answering(server):
    import http.client

    host, port = server[len("http://"):].split(":")
    for _ in range(3):  # clients that go away after the first piece of a long sample
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/api/sample?length=5000&seed=1")
        r = conn.getresponse()
        assert r.status == 200 and r.read(20).startswith(b"data: ")
        conn.close()
    status, raw = fetch(server + "/api/sample?length=30&seed=2&prime=int%20")
    assert status == 200 and sse_text(raw.decode())[1] == {"length": 30}
    assert fetch(server + "/api/info")[0] == 200


def test_concurrent_clients_get_correct_answers(server, run, one_thread):
    # What each request must answer, from an Explorer in this process with the same settings.
    model_side, first = build_explorer(str(run), None, None)
    texts = [TEXT] + [c_like(1_500, seed=10 + k) for k in range(3)]  # 1,500: two recording streams
    ids = [model_side.add_text(t)["id"] for t in texts]

    jobs = []
    for k, t in enumerate(texts):
        jobs.append(("post", "/api/text", {"text": t}, {"id": ids[k], "length": len(t)}))
        for layer, kind, unit in ((0, "h", k), (1, "c", 2 * k + 1), (1, "o", 3)):
            want = model_side.activations(ids[k], layer, kind, [unit])
            jobs.append(("get", f"/api/activations?text={ids[k]}&layer={layer}&kind={kind}&units={unit}", None, want))
        jobs.append(("get", f"/api/predictions?text={ids[k]}&start=40&end=60",
                     None, model_side.predictions(ids[k], 40, 60)))
        jobs.append(("post", "/api/select", {"text": ids[k], "start": 30, "end": 33, "layer": 1, "threshold": 0.2},
                     model_side.select(ids[k], 30, 33, 0.2, "h", 1)))
    for seed in range(4):
        want = sample(model_side.model, length=40, prime="int ", seed=seed, temperature=0.9, include_prime=False)
        jobs.append(("sample", f"/api/sample?prime=int%20&length=40&seed={seed}&temperature=0.9", None, want))
    jobs.append(("bad", "/api/activations?text=nope&units=0", None, 404))
    jobs.append(("bad", "/api/text", {"text": "x" * 30_000}, 413))

    def call(job):
        how, path, body, want = job
        status, raw = fetch(server + path, body if how in ("post", "bad") else None)
        if how == "bad":
            return status == want and "error" in json.loads(raw)
        if status != 200:
            return False
        if how == "sample":
            return sse_text(raw.decode())[0] == want
        got = json.loads(raw)
        return all(got[key] == value for key, value in want.items())

    # Several rounds: the texts are posted by some clients while others already ask about them,
    # so the first round posts them first; then every job runs concurrently in shuffled order.
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(call, [j for j in jobs if j[1] == "/api/text" and j[0] == "post"]))
        order = np.random.default_rng(0).permutation(len(jobs) * 2) % len(jobs)
        results = list(pool.map(call, [jobs[i] for i in order]))
    assert all(results), [jobs[i][1] for i, ok in zip(order, results) if not ok]
