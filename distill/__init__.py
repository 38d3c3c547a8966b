"""Distillation of a hybridssl teacher into lightweight students whose embeddings stay in the
teacher's joint space: ``distill.distill(teacher, out, student=...)`` (or ``api.distill_run``)."""

from hybridssl.facade import lazy_api

#: the public face (docs/python_api.md), imported on first use
__getattr__, __dir__ = lazy_api(__name__, "distill.api", ("distill", "distill_run"))
