"""Distillation of a hybridssl teacher into lightweight students whose embeddings stay in the
teacher's joint space: ``distill.distill(teacher, out, student=...)`` (or ``api.distill_run``)."""

#: the public face (docs/python_api.md), imported on first use so that ``import distill`` stays light
_API = ("distill", "distill_run")


def __getattr__(name: str):  # PEP 562: lazy attributes
    if name in _API:
        from distill import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
