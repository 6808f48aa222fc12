"""Running a trained character model outside Python's torch: ONNX files and a self-contained page."""
