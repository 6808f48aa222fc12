"""Each stream of an evaluation: its figures add up to the whole, each equals that stream read
alone from a zero state (the oracle: streams never share a state), and a stream that runs away
is said in one sentence by `unrolled eval` and the trainer's test pass, never hidden in the mean."""
import json

import numpy as np
import pytest
import torch

from unrolled import store
from unrolled.charlm.config import ModelConfig
from unrolled.charlm.evaluate import (Stream, evaluate, evaluate_tokens, runaway_warning, streams_report,
                                      unigram_bits)
from unrolled.charlm.model import CharLM
from unrolled.charlm.text import Vocabulary, to_tokens
from unrolled.charlm.trainer import train
from unrolled.cli import main

TEXT = "the cat sat on the mat; the rat sat on the hat. " * 5


def tiny(cell):
    torch.manual_seed(3)
    vocab = Vocabulary.from_text(TEXT)
    model = CharLM(vocab, ModelConfig(cell=cell, hidden_size=5, num_layers=2, embedding_size=3)).double()
    return model, to_tokens(vocab.encode(TEXT), len(vocab))


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
def test_each_stream_equals_that_stream_read_alone(cell):
    model, tokens = tiny(cell)
    streams = []
    total, count = evaluate_tokens(model, tokens, batch_size=3, seq_len=7, per_stream=streams)
    n = (len(tokens) - 1) // 3
    assert [s.start for s in streams] == [0, n, 2 * n] and all(s.chars == n for s in streams)
    assert sum(s.chars for s in streams) == count
    assert sum(s.nats for s in streams) == pytest.approx(total, rel=1e-12)
    for s in streams:  # the oracle: the stream's own characters, one stream, windows of another length
        alone, chars = evaluate_tokens(model, tokens[s.start:s.start + n + 1], batch_size=1, seq_len=5)
        assert chars == n and s.nats == pytest.approx(alone, rel=1e-10)
    assert len({round(s.nats, 6) for s in streams}) == 3  # distinct texts, distinct figures


def test_a_runaway_stream_is_one_far_worse_than_both_the_unigram_and_the_median():
    tokens = np.array([0, 0, 0, 1] * 50)
    assert unigram_bits(tokens) == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)), abs=0.01)
    ln2 = np.log(2)
    def of(bits):
        return [Stream(i, 100 * i, 100, b * 100 * ln2) for i, b in enumerate(bits)]
    report = streams_report(of([0.5, 0.6, 0.4, 21.0]), tokens)
    assert [r["stream"] for r in report["runaway_streams"]] == [3]
    assert report["median_stream_bits_per_char"] == pytest.approx(0.55)
    said = runaway_warning(report, "the test split")
    assert said.startswith("stream 4, from character 300 on, one of the 4 streams the test split is read in,")
    assert "21.00 bits/char" in said and "0.55 for the median stream" in said
    # a text unlike the model's (every stream above the unigram) is not a runaway, nor twice the median alone
    assert streams_report(of([6.0, 6.5, 7.0, 6.2]), tokens)["runaway_streams"] == []
    assert streams_report(of([0.1, 0.1, 0.1, 0.5]), tokens)["runaway_streams"] == []
    assert runaway_warning(streams_report(of([0.5, 0.6, 0.4, 0.5]), tokens), "x") is None
    two = runaway_warning(streams_report(of([0.5, 12.0, 0.4, 21.0, 0.6, 0.5]), tokens), "x")
    assert two.startswith("2 of the 6 streams x is read in score worse") and "stream 4, from character 300" in two


def forced(tmp_path):
    """A checkpoint of a real run whose head predicts "a" whatever it reads, and a text of 300 a's
    then 100 b's: of 4 streams the last reads b's it is sure will not come."""
    corpus = tmp_path / "ab.txt"
    corpus.write_text("a" * 300 + "b" * 100, encoding="utf-8")
    train(paths=[str(corpus)], hidden_size=8, num_layers=1, embedding_size=4, batch_size=2, seq_len=16,
          max_steps=2, out=str(tmp_path / "run"), progress=False, seed=0)
    ck = store.read(tmp_path / "run" / "best", full=False)
    weights = dict(ck.model)
    a = ck.state["vocab"]["symbols"].index("a")
    weights["head.weight"] = torch.zeros_like(weights["head.weight"])
    weights["head.bias"] = torch.zeros_like(weights["head.bias"])
    weights["head.bias"][a] = 30.0
    record = {k: v for k, v in ck.state.items() if k not in ("format", "version", "torch", "files", "sha256", "checksum")}
    store.save(tmp_path / "forced", record, weights)
    return tmp_path / "forced", corpus


def test_eval_says_the_runaway_stream_and_prints_every_stream(tmp_path, capsys):
    ckpt, corpus = forced(tmp_path)
    assert main(["eval", str(ckpt), str(corpus), "--batch-size", "4", "--streams", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.count("unrolled: note: stream 4, from character 297 on, one of the 4 streams") == 1
    assert "see each stream with --streams" in err
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and rows[3][-2:] == ["runs", "away"]
    assert main(["eval", str(ckpt), str(corpus), "--batch-size", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert [s["stream"] for s in res["runaway_streams"]] == [3] and len(res["streams"]) == 4
    assert res["streams"][3]["bits_per_char"] > 30 > 0.01 > res["streams"][0]["bits_per_char"]
    assert main(["eval", str(ckpt), str(corpus), "--streams", "--dynamic"]) == 2
    assert "--streams" in capsys.readouterr().err


def test_evaluate_returns_the_streams_beside_the_mean():
    model, _ = tiny("lstm")
    r = evaluate(model, TEXT, batch_size=4, seq_len=9)
    assert len(r["streams"]) == 4 and r["runaway_streams"] == []
    mean = sum(s["bits_per_char"] * s["chars"] for s in r["streams"]) / r["chars"]
    assert mean == pytest.approx(r["bits_per_char"], rel=1e-9)


def test_the_trainers_test_pass_logs_its_median_and_worst_stream(tmp_path):
    from unrolled import load
    from unrolled.cli.lm import _part
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 8, encoding="utf-8")
    r = train(paths=[str(corpus)], hidden_size=8, num_layers=1, embedding_size=4, batch_size=4, seq_len=16,
              max_steps=3, out=str(tmp_path / "run"), progress=False, seed=0)
    test = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("split") == "test"][-1]
    model = load(tmp_path / "run")  # its test split read again as the trainer reads it: 4 streams, windows of 256
    part, _ = _part(model, corpus.read_text(encoding="utf-8"), "test", corpus)
    streams = []
    evaluate_tokens(model, to_tokens(model.vocab.encode(part), len(model.vocab)), 4, 256, per_stream=streams)
    bits = [s.bits_per_char for s in streams]
    assert len(bits) == 4 and test["worst_stream_bpc"] == pytest.approx(max(bits), rel=1e-6)
    assert test["median_stream_bpc"] == pytest.approx(float(np.median(bits)), rel=1e-6)
    assert test["runaway_streams"] == 0 and r.metrics["test_worst_stream_bpc"] == test["worst_stream_bpc"]
