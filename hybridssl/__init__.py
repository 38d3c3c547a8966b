"""hssl: hybrid self-supervised multimodal pretraining (the training side).

``hybridssl.train(...)`` and ``hybridssl.evaluate(...)`` are the Python API (:mod:`hybridssl.app.api`);
everything else lives in submodules, imported explicitly."""

#: the public face (docs/python_api.md), imported on first use so that ``import hybridssl`` stays light
_API = ("train", "evaluate", "TrainResult", "EvalResult")


def __getattr__(name: str):  # PEP 562: lazy attributes
    if name in _API:
        from hybridssl.app import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
