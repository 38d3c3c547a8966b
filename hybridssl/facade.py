"""Lazy re-exports for the package roots (``hybridssl.train``, ``distill.distill``, ``export.export``):
the Python API is importable from the root, but ``import hybridssl`` stays light (no torch) until
one of those names is used (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def lazy_api(package: str, module: str, names: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``'s root: ``names`` come from ``module`` on first use."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*vars(importlib.import_module(package)), *names])

    return __getattr__, __dir__
