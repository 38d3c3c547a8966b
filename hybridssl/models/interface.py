"""The interface every tower model offers (a :class:`typing.Protocol`): the pretrained
:class:`hybridssl.models.hybrid.HybridModel` and every distilled ``distill.students.StudentModel``.
Evaluation, distillation and export are written against it alone, so they treat a teacher and a
student alike.

* ``forward_features(m, x, attention)`` — the tower's pooled features (B, W_m), before the head;
* ``forward_head(m, pooled)`` — the L2-normalised joint embedding (B, E) of those features;
* ``embed(m, x, attention)`` — both in one call;
* ``feature_dim(m)`` — W_m; ``tower_parameters(m)`` — the parameters inference of tower m uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class TowerModel(Protocol):
    modalities: tuple[str, ...]
    training: bool

    # the nn.Module side every tower model also has
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def forward_features(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor: ...

    def forward_head(self, modality: str, pooled: Tensor) -> Tensor: ...

    def embed(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor: ...

    def feature_dim(self, modality: str) -> int: ...

    def tower_parameters(self, modality: str) -> list[nn.Parameter]: ...
