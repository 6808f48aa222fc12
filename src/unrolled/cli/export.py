"""`unrolled export`: a checkpoint as an ONNX file or as a page that samples it offline."""
from __future__ import annotations

from unrolled.charlm.run import open_run
from unrolled.export import export_html, export_onnx


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a model as ONNX (state in and out) or as one web page that samples it offline",
        description="Export a character model. --onnx FILE writes an ONNX model with inputs tokens (B, T) int64 "
                    "and the state h (and c for an LSTM), each (layers, B, hidden), and outputs the logits "
                    "(B, T, V) and the new state in the same order. --html FILE writes one self-contained page "
                    "(the weights inside it) that samples the model in a browser with no server and no network.")
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a checkpoint directory")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", metavar="FILE", help="write the model as an ONNX file")
    what.add_argument("--html", metavar="FILE", help="write a self-contained sampler page")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    run = open_run(args.checkpoint)
    if args.onnx:
        path = export_onnx(run.model, args.onnx)
    else:
        path = export_html(run.model, args.html, title=f"unrolled sampler: {run.name}")
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB): {run.model.config.cell}, {run.model.rnn.num_layers} x "
          f"{run.model.rnn.hidden_size}, vocabulary {run.model.vocab_size}")
    return 0
