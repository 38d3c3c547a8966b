"""The unit every dataset yields, and the bookkeeping of items that could not be used.

A :class:`Sample` carries any subset of the modalities (partial availability is normal):

* ``image``    — ``(H, W, 3)`` ``uint8`` RGB array, or ``None``
* ``caption``  — non-empty ``str``, or ``None``
* ``audio``    — ``(T,)`` ``float32`` mono waveform in ``[-1, 1]`` at ``sample_rate`` Hz, or ``None``
* ``features`` — precomputed per-modality sequences ``{name: (T, D) float32}``, or ``None``; a non-empty
  stream ``name`` is the modality ``seq_<name>`` (:mod:`edge_runtime.schema`)
* ``label``    — class index (``int``), or ``None`` when unlabeled
* ``paraphrases`` — other captions of the same item (same content, other words: COCO's other
  annotations of the image, the built-in grammar drawn again), ``()`` when there are none

Datasets raise :class:`BadItem` from ``__getitem__`` for an item that cannot be repaired; the
batcher catches it, drops the item and records the reason in a :class:`SkipReport`, so a run
never crashes mid-epoch and never drops anything silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.modalities import SEQUENCE_PREFIX


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
    #: the item's index in the dataset a :class:`hybridssl.data.tagged.PositionTagged` view read it from
    position: int | None = None
    paraphrases: tuple[str, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        present = []
        if self.image is not None:
            present.append("image")
        if self.caption is not None:
            present.append("text")
        if self.audio is not None:
            present.append("audio")
        present += sorted(SEQUENCE_PREFIX + name for name, x in (self.features or {}).items() if x.size)
        return tuple(present)


@dataclass
class SkipReport:
    """Counts of skipped items by reason, plus repairs that were applied (resampled, mono-mixed...).

    ``skipped[reason]`` counts *items*. An item skipped while decoding is usually drawn again (every
    epoch, every retry): :meth:`skip_drawn` counts it once in ``skipped`` and every time in ``draws``,
    remembering the uids it has seen (``seen``, kept in checkpoints so a resumed run does not count
    them again). :meth:`skip` is for problems found once per item (index parsing)."""

    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    draws: Counter = field(default_factory=Counter)
    seen: dict[str, set[str]] = field(default_factory=dict)
    max_examples: int = 5

    def skip(self, uid: str, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        self.draws[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(f"{uid}{': ' + detail if detail else ''}")

    def skip_drawn(self, uid: str, reason: str, detail: str = "") -> None:
        """A drawn item that could not be used: counted once per (reason, uid), every draw in ``draws``."""
        seen = self.seen.setdefault(reason, set())
        if uid in seen:
            self.draws[reason] += 1
            return
        seen.add(uid)
        self.skip(uid, reason, detail)

    def repair(self, what: str, n: int = 1) -> None:
        self.repaired[what] += n

    def merge(self, other: "SkipReport") -> None:
        for reason, n in other.skipped.items():
            mine, theirs = self.seen.setdefault(reason, set()), other.seen.get(reason, set())
            self.skipped[reason] += n - len(mine & theirs)  # an item both reports saw counts once
            mine |= theirs
        self.draws.update(other.draws)
        self.repaired.update(other.repaired)
        for reason, ex in other.examples.items():
            mine_ex = self.examples.setdefault(reason, [])
            mine_ex.extend(ex[: max(0, self.max_examples - len(mine_ex))])

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "skipped": dict(self.skipped),
            "repaired": dict(self.repaired),
            "examples": self.examples,
            "total_skipped": self.total_skipped,
            "skipped_draws": dict(self.draws),
        }

    def state_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` plus the uids seen, for a checkpoint."""
        return {**self.to_dict(), "seen": {r: sorted(u) for r, u in self.seen.items()}}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "SkipReport":
        return cls(skipped=Counter(d.get("skipped", {})), repaired=Counter(d.get("repaired", {})),
                   examples={k: list(v) for k, v in d.get("examples", {}).items()},
                   draws=Counter(d.get("skipped_draws", d.get("skipped", {}))),
                   seen={r: set(u) for r, u in d.get("seen", {}).items()})
