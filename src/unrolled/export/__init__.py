"""Running a trained character model outside Python's torch: ONNX files and a self-contained page.

`export_onnx(model, path)` writes the model as ONNX with its recurrent state as inputs and outputs
(onnx.py); `export_html(model, path)` writes one page that samples it in a browser, offline
(page.py). Both refuse a layer they cannot run exactly (weights.py). docs/export.md.
"""
from unrolled.export.onnx import export_onnx
from unrolled.export.page import export_html

__all__ = ["export_onnx", "export_html"]
