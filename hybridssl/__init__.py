"""hssl: hybrid self-supervised multimodal pretraining (the training side).

``hybridssl.train(...)`` and ``hybridssl.evaluate(...)`` are the Python API (:mod:`hybridssl.app.api`);
everything else lives in submodules, imported explicitly."""

from hybridssl.facade import lazy_api

#: the public face (docs/python_api.md), imported on first use
__getattr__, __dir__ = lazy_api(__name__, "hybridssl.app.api", ("train", "evaluate", "TrainResult", "EvalResult"))
