"""ONNX / ONNX Runtime / OpenVINO / TensorRT export and bundle writing.

``export.export(run, out, target=...)`` (or ``api.export_run``) is the entry point; ``towers`` (exportable tower modules and their signature),
``onnx_graph`` (export, optimise, check), ``data`` (calibration and held-out data), ``backends``
(runners of the real back ends), ``parity`` (the gate after every step), ``quantize_ort``,
``openvino_backend``, ``tensorrt_backend`` and ``bundle`` (the writer of docs/bundle.md).
"""

from hybridssl.facade import lazy_api

#: the public face (docs/python_api.md), imported on first use
__getattr__, __dir__ = lazy_api(__name__, "export.api", ("export", "export_run", "ExportResult"))
