"""ONNX / ONNX Runtime / OpenVINO / TensorRT export and bundle writing (lands with issue #5)."""
