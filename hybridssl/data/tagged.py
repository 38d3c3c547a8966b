"""A dataset view whose samples know where they came from: ``PositionTagged(base, positions)[i]``
is ``base[positions[i]]`` with ``Sample.position = positions[i]``. Batches drop bad items, so the
collator's ``batch["positions"]`` is how rows of a batch are traced back to dataset positions
(evaluation splits, the distillation teacher cache)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from hybridssl.data.sample import Sample


class PositionTagged(Dataset):
    def __init__(self, base: Any, positions: Sequence[int] | None = None) -> None:
        self.base = base
        self.positions = list(range(len(base))) if positions is None else [int(p) for p in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> Sample:
        p = self.positions[i]
        return dataclasses.replace(self.base[p], position=p)
