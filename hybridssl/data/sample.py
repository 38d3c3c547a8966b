"""The unit every dataset yields, and the bookkeeping of items that could not be used.

A :class:`Sample` carries any subset of the modalities (partial availability is normal):

* ``image``    — ``(H, W, 3)`` ``uint8`` RGB array, or ``None``
* ``caption``  — non-empty ``str``, or ``None``
* ``audio``    — ``(T,)`` ``float32`` mono waveform in ``[-1, 1]`` at ``sample_rate`` Hz, or ``None``
* ``features`` — precomputed per-modality sequences ``{name: (T, D) float32}``, or ``None``
* ``label``    — class index (``int``), or ``None`` when unlabeled

Datasets raise :class:`BadItem` from ``__getitem__`` for an item that cannot be repaired; the
batcher catches it, drops the item and records the reason in a :class:`SkipReport`, so a run
never crashes mid-epoch and never drops anything silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODALITIES = ("image", "text", "audio")


class BadItem(Exception):
    """An item that cannot be used. ``reason`` is a short stable category, ``detail`` the specifics."""

    def __init__(self, uid: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{uid}: {reason}{': ' + detail if detail else ''}")
        self.uid = uid
        self.reason = reason
        self.detail = detail


@dataclass
class Sample:
    uid: str
    image: np.ndarray | None = None
    caption: str | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    features: dict[str, np.ndarray] | None = None
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        present = []
        if self.image is not None:
            present.append("image")
        if self.caption is not None:
            present.append("text")
        if self.audio is not None:
            present.append("audio")
        return tuple(present)


@dataclass
class SkipReport:
    """Counts of skipped items by reason, plus repairs that were applied (resampled, mono-mixed...)."""

    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    def skip(self, uid: str, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(f"{uid}{': ' + detail if detail else ''}")

    def repair(self, what: str, n: int = 1) -> None:
        self.repaired[what] += n

    def merge(self, other: "SkipReport") -> None:
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)
        for reason, ex in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(ex[: max(0, self.max_examples - len(mine))])

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "skipped": dict(self.skipped),
            "repaired": dict(self.repaired),
            "examples": self.examples,
            "total_skipped": self.total_skipped,
        }
