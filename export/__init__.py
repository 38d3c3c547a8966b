"""ONNX / ONNX Runtime / OpenVINO / TensorRT export and bundle writing.

``export.export(run, out, target=...)`` (or ``api.export_run``) is the entry point; ``towers`` (exportable tower modules and their signature),
``onnx_graph`` (export, optimise, check), ``data`` (calibration and held-out data), ``backends``
(runners of the real back ends), ``parity`` (the gate after every step), ``quantize_ort``,
``openvino_backend``, ``tensorrt_backend`` and ``bundle`` (the writer of docs/bundle.md).
"""

#: the public face (docs/python_api.md), imported on first use so that ``import export`` stays light
_API = ("export", "export_run", "ExportResult")


def __getattr__(name: str):  # PEP 562: lazy attributes
    if name in _API:
        from export import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
