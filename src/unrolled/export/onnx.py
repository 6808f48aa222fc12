"""A character model as an ONNX file whose state is an input and an output.

    inputs:  tokens (B, T) int64,  h (L, B, H) float32  [, c (L, B, H) float32 for an LSTM]
    outputs: logits (B, T, V) float32,  new_h (L, B, H)  [, new_c (L, B, H)]

B and T are dynamic. An ONNX Runtime session keeps nothing between calls, so a caller carries the
state itself: feed zeros first, then each call's new_h (and new_c) as the next call's h (and c);
reading a text in two calls then gives the same logits as reading it in one (tests/test_export_onnx.py).

The graph is written node by node with `onnx.helper`, on ONNX's own recurrent operators, one per
layer: Gather (the embedding) -> LSTM | GRU | RNN per layer -> MatMul + Add (the head). torch's
exporters are not used: the TorchScript one is deprecated and traces whichever path `auto` picks
(our sequence kernel or the readable loop would come out unrolled at the example's T), and the
dynamo one needs onnxscript, one more dependency (docs/export.md). ONNX stacks the
gates in another order than torch (LSTM i, o, f, c against torch's i, f, g, o; GRU z, r, h against
r, z, n, with linear_before_reset = 1, which is torch's GRU), so the rows are reordered here.
The vocabulary is in the file's metadata (`unrolled.symbols`, a JSON list in index order).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from unrolled.errors import UserError
from unrolled.export.weights import Exported, collect, write_file

OPSET = 17  # not the newest, so that older runtimes read the file too
OPERATOR = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# torch's gate blocks in ONNX's order: LSTM (i, f, g, o) -> (i, o, f, c); GRU (r, z, n) -> (z, r, h)
GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _onnx():
    """The onnx package (the optional export extra), imported when an export is asked for."""
    try:
        import onnx  # here, not at the top: an optional dependency, and `unrolled` starts without it
    except ImportError:
        raise UserError("unrolled export --onnx needs the onnx package; install the export extra: "
                        "pip install 'unrolled[export]'") from None
    return onnx


def _gates(a: np.ndarray, cell: str) -> np.ndarray:
    """Rows of a (G*H, ...) weight or (G*H,) bias in ONNX's gate order."""
    blocks = np.split(a, len(GATE_ORDER[cell]), axis=0)
    return np.concatenate([blocks[i] for i in GATE_ORDER[cell]], axis=0)


def _layer_initializers(m: Exported, k: int) -> list:
    numpy_helper = _onnx().numpy_helper
    layer = m.layers[k]
    W = _gates(layer.weight_ih, m.cell)[None]  # (1, G*H, D_k): one direction
    R = _gates(layer.weight_hh, m.cell)[None]  # (1, G*H, H)
    B = np.concatenate([_gates(layer.bias_ih, m.cell), _gates(layer.bias_hh, m.cell)])[None]  # (1, 2*G*H)
    return [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), f"{name}_l{k}")
            for name, a in (("W", W), ("R", R), ("B", B))]


def _layer_nodes(m: Exported, k: int, x: str) -> tuple[list, str, list[str]]:
    """The nodes of layer k reading x (T, B, D_k) -> (nodes, its output (T, B, H), its new state names)."""
    helper = _onnx().helper
    nodes, initial = [], []
    for s in m.state_names:  # the layer's slice of the state: (1, B, H), one direction
        nodes.append(helper.make_node("Slice", [s, f"k{k}", f"k{k + 1}", "axis0"], [f"{s}_l{k}"]))
        initial.append(f"{s}_l{k}")
    ins = [x, f"W_l{k}", f"R_l{k}", f"B_l{k}", "", *initial]  # "" : no sequence_lens, every row is T long
    outs = [f"Y_l{k}"] + [f"new_{s}_l{k}" for s in m.state_names]
    attrs = {"hidden_size": m.hidden_size, "direction": "forward"}
    if m.cell == "gru":
        attrs["linear_before_reset"] = 1  # r multiplies (W_hn h + b_hn), as torch.nn.GRU
    if m.cell == "rnn":
        attrs["activations"] = ["Relu" if m.nonlinearity == "relu" else "Tanh"]
    nodes.append(helper.make_node(OPERATOR[m.cell], ins, outs, name=f"layer{k}", **attrs))
    nodes.append(helper.make_node("Squeeze", [f"Y_l{k}", "axis1"], [f"out_l{k}"]))  # (T, 1, B, H) -> (T, B, H)
    return nodes, f"out_l{k}", outs[1:]


def build(model):
    """The ONNX model (an onnx.ModelProto) of a CharLM; the module's docstring gives its inputs and outputs."""
    onnx = _onnx()
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    m = collect(model, "unrolled export --onnx")
    L, H, V = m.num_layers, m.hidden_size, len(m.symbols)
    consts = {"axis0": [0], "axis1": [1], **{f"k{k}": [k] for k in range(L + 1)}}
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), name) for name, v in consts.items()]
    inits.append(numpy_helper.from_array(m.embedding, "embedding"))  # (V, D)
    inits.append(numpy_helper.from_array(np.ascontiguousarray(m.head_weight.T), "head_weight_t"))  # (H, V)
    inits.append(numpy_helper.from_array(m.head_bias, "head_bias"))  # (V,)
    nodes = [helper.make_node("Transpose", ["tokens"], ["tokens_tb"], perm=[1, 0]),  # (T, B)
             helper.make_node("Gather", ["embedding", "tokens_tb"], ["x_l0"], axis=0)]  # (T, B, D)
    x, finals = "x_l0", {s: [] for s in m.state_names}
    for k in range(L):
        inits += _layer_initializers(m, k)
        layer_nodes, x, new_state = _layer_nodes(m, k, x)
        nodes += layer_nodes
        for s, name in zip(m.state_names, new_state):
            finals[s].append(name)
    for s in m.state_names:  # the layers' (1, B, H) states stacked into (L, B, H)
        nodes.append(helper.make_node("Concat", finals[s], [f"new_{s}"], axis=0))
    nodes += [helper.make_node("Transpose", [x], ["top_bt"], perm=[1, 0, 2]),  # (B, T, H)
              helper.make_node("MatMul", ["top_bt", "head_weight_t"], ["scores"]),  # (B, T, V)
              helper.make_node("Add", ["scores", "head_bias"], ["logits"])]
    state = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [L, "batch", H])  # noqa: E731
    graph = helper.make_graph(
        nodes, f"unrolled_charlm_{m.cell}",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])]
        + [state(s) for s in m.state_names],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "time", V])]
        + [state(f"new_{s}") for s in m.state_names],
        inits, doc_string=__doc__.splitlines()[0])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="unrolled")
    meta = {"unrolled.symbols": json.dumps(m.symbols, ensure_ascii=False),
            "unrolled.byte_level": json.dumps(m.byte_level), "unrolled.cell": m.cell,
            "unrolled.state": ",".join(m.state_names)}
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path: str | os.PathLike) -> Path:
    """Write `model` (a CharLM) as an ONNX file at `path`, atomically; returns the path."""
    return write_file(path, build(model).SerializeToString(), "--onnx")
