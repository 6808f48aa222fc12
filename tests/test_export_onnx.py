"""`unrolled export --onnx`: ONNX Runtime runs the exported model as torch runs the CharLM.

The oracle is the model itself: its logits and state from `CharLM.forward`, its greedy text from
`unrolled.sample(..., argmax=True)`. For RNN, LSTM and GRU with one and two layers (tiny sizes,
random weights) and the committed models/linux-lstm-2x128: the next-character distribution after a
50-character prime is within 1e-4 of torch's, also when the prime is read in two calls with the
state carried between them, and 1,000 greedy characters are the same. A file written with torch's
gate order instead of ONNX's is caught (so the equality tests can fail).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import unrolled  # noqa: E402
from unrolled import store  # noqa: E402
from unrolled.charlm.config import Config  # noqa: E402
from unrolled.charlm.model import CharLM  # noqa: E402
from unrolled.charlm.sample import sample  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.errors import UserError  # noqa: E402
from unrolled.export import export_onnx, onnx as export  # noqa: E402
from unrolled.minimal import MinGRU, MinLSTM  # noqa: E402
from unrolled.recurrent import LSTM, RNN  # noqa: E402
from export_models import CHARS, COMMITTED, LINUX_PRIME, tiny  # noqa: E402


def session(model, path: Path) -> "ort.InferenceSession":
    export_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def names(model) -> list[str]:
    return ["h", "c"] if model.config.cell == "lstm" else ["h"]


def run(sess, model, tokens: np.ndarray, state: list[np.ndarray] | None = None):
    """tokens (B, T) -> (logits (B, T, V), [new state tensors]) from ONNX Runtime."""
    L, H = model.rnn.num_layers, model.rnn.hidden_size
    state = state or [np.zeros((L, tokens.shape[0], H), np.float32) for _ in names(model)]
    out = sess.run(None, {"tokens": tokens.astype(np.int64), **dict(zip(names(model), state))})
    return out[0], out[1:]


def torch_probs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0, -1].softmax(-1).double().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.astype(np.float64) - z.max())
    return e / e.sum()


def greedy(sess, model, prime: str, length: int) -> str:
    """`length` argmax characters from ONNX Runtime, one call per character, the state carried."""
    logits, state = run(sess, model, np.array([model.vocab.encode(prime)]))
    out = []
    for _ in range(length):
        nxt = int(np.argmax(logits[0, -1]))
        out.append(nxt)
        logits, state = run(sess, model, np.array([[nxt]]), state)
    return prime + model.vocab.decode(out)


def check_agrees(model, sess, prime: str) -> None:
    ids = model.vocab.encode(prime)
    want = torch_probs(model, ids)
    logits, _ = run(sess, model, np.array([ids]))
    np.testing.assert_allclose(softmax(logits[0, -1]), want, rtol=0, atol=1e-4)
    cut = len(ids) // 3  # the prime in two calls, the state carried from the first to the second
    _, state = run(sess, model, np.array([ids[:cut]]))
    logits, _ = run(sess, model, np.array([ids[cut:]]), state)
    np.testing.assert_allclose(softmax(logits[0, -1]), want, rtol=0, atol=1e-4)
    assert greedy(sess, model, prime, 1000) == sample(model, length=1000, argmax=True, prime=prime)


CASES = [("rnn", 1, 0), ("rnn", 2, 3), ("lstm", 1, 3), ("lstm", 2, 0), ("gru", 1, 0), ("gru", 2, 3)]


@pytest.mark.parametrize("cell, layers, embedding", CASES)
def test_onnx_runtime_equals_torch(tmp_path, cell, layers, embedding):
    model = tiny(cell, layers, embedding)
    sess = session(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    prime = "".join(rng.choice(list(CHARS), 50))
    check_agrees(model, sess, prime)
    # every output, batched (B = 3, T = 7), from a random state: logits and the new state as torch's
    tokens = torch.randint(0, len(CHARS), (3, 7))
    state = tuple(torch.randn(layers, 3, 5) for _ in names(model))
    with torch.no_grad():
        logits, new = model(tokens, state if cell == "lstm" else state[0])
    got, got_state = run(sess, model, tokens.numpy(), [s.numpy() for s in state])
    np.testing.assert_allclose(got, logits.numpy(), rtol=0, atol=1e-5)
    for g, w in zip(got_state, new if cell == "lstm" else (new,)):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-5)


def test_the_committed_model(tmp_path):
    model = unrolled.load(COMMITTED)
    assert len(LINUX_PRIME) >= 50
    check_agrees(model, session(model, tmp_path / "linux.onnx"), LINUX_PRIME)


def test_a_relu_rnn(tmp_path):
    model = tiny("rnn", 2, 3)
    model.rnn = RNN(3, 5, num_layers=2, nonlinearity="relu")
    check_agrees(model.eval(), session(model, tmp_path / "relu.onnx"), "abc; {de\nfgh}" * 4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_gate_order_would_be_caught(tmp_path, monkeypatch, cell):
    model = tiny(cell, 2, 3)
    monkeypatch.setitem(export.GATE_ORDER, cell, list(range(len(export.GATE_ORDER[cell]))))
    sess = session(model, tmp_path / "wrong.onnx")
    ids = model.vocab.encode("abcdefgh" * 6)
    logits, _ = run(sess, model, np.array([ids]))
    assert np.abs(softmax(logits[0, -1]) - torch_probs(model, ids)).max() > 1e-3


def test_inputs_outputs_and_metadata(tmp_path):
    import onnx  # the optional export extra, skipped above when missing

    model = tiny("lstm", 2, 3)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(v.name, dims(v)) for v in proto.graph.input] == [
        ("tokens", ["batch", "time"]), ("h", [2, "batch", 5]), ("c", [2, "batch", 5])]
    assert [(v.name, dims(v)) for v in proto.graph.output] == [
        ("logits", ["batch", "time", len(CHARS)]), ("new_h", [2, "batch", 5]), ("new_c", [2, "batch", 5])]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["unrolled.symbols"]) == model.vocab.symbols and meta["unrolled.state"] == "h,c"


def checkpoint(path: Path, model: CharLM) -> Path:
    store.save(path, {"config": Config(model=model.config).to_dict(), "vocab": model.vocab.to_json(), "step": 1},
               model.state_dict())
    return path


def test_cli_writes_the_file(tmp_path, capsys):
    model = tiny("gru", 2, 0)
    ck = checkpoint(tmp_path / "ck", model)
    assert main(["export", str(ck), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "gru, 2 x 5, vocabulary 14" in capsys.readouterr().out
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    check_agrees(model, sess, "hag; {fe\ndcb}" * 4)
    assert main(["export", str(ck), "--onnx", str(tmp_path / "missing" / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist; create it first" in err and "Traceback" not in err


@pytest.mark.parametrize("change, says", [
    (lambda m: setattr(m, "rnn", MinGRU(3, 5, num_layers=2)), "supports the rnn, lstm and gru cells, and this "
                                                              "model's recurrent layer is MinGRU"),
    (lambda m: setattr(m, "rnn", MinLSTM(3, 5)), "recurrent layer is MinLSTM"),
    (lambda m: setattr(m, "rnn", type("MyLSTM", (LSTM,), {})(3, 5)), "this model's recurrent layer is MyLSTM"),
    (lambda m: setattr(m, "rnn", LSTM(3, 5, num_layers=2, bidirectional=True)), "bidirectional"),
    (lambda m: setattr(m, "rnn", RNN(3, 5, input_depth=1)), "deep input, transition or output parts"),
])
def test_a_layer_it_cannot_export_is_refused(tmp_path, change, says):
    model = tiny("lstm", 2, 3)
    change(model)
    with pytest.raises(UserError, match=says):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(UserError, match="exports a character model"):
        export_onnx(model.rnn, tmp_path / "m.onnx")
