"""Common base of every hssl dataset, and the shared label-mapping rule.

A dataset is an indexable collection of :class:`~hybridssl.data.sample.Sample`. ``__getitem__`` may raise
:class:`~hybridssl.data.sample.BadItem` for an item that cannot be decoded (the batcher drops it and counts
the reason). Problems found while *parsing the index* (malformed manifest rows, unknown labels...) are
counted once, at construction, in ``load_report`` and the offending rows are not part of the dataset.

``captions()`` and ``labels()`` read only the index, never the media, so a tokenizer can be trained and
class statistics computed without decoding a single image or waveform.

Label rule (:func:`resolve_labels`) for raw labels that are class names (``str``) or indices (``int``):

* ``label_names`` given → a name maps to its position; an integer (or an integer-looking string that is
  not a name) must lie in ``[0, C)``; anything else is the skip reason ``"unknown_label"``.
* not given, every label an integer → indices kept, ``label_names = ["0", ..., str(max)]``; a negative
  index is ``"unknown_label"``.
* not given otherwise → names (integers as their decimal string) mapped by ``sorted(unique(names))``.
* ``None`` / ``""`` → unlabeled (``None``); no labels at all → ``label_names = None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from torch.utils.data import Dataset

from edge_runtime.modalities import check_modalities  # noqa: F401  (re-exported: the loaders validate with it)
from hybridssl.data.readers import clean_caption
from hybridssl.data.sample import BadItem, Sample, SkipReport

RawLabel = str | int | None

_INT_RE = re.compile(r"^[+-]?\d+$")


class MultimodalDataset(Dataset):
    """Base class: subclasses implement ``__len__``, ``__getitem__`` and the index-only hooks
    :meth:`caption_at` / :meth:`label_at` (or override :meth:`captions` / :meth:`labels`)."""

    name: str = "dataset"
    modalities: tuple[str, ...] = ()
    label_names: list[str] | None = None
    #: precomputed-feature datasets: ``{feature name: D}``; empty for raw-media datasets.
    feature_dims: dict[str, int] = {}

    def __init__(self) -> None:
        self.load_report = SkipReport()
        self.feature_dims = {}

    @property
    def load_report(self) -> SkipReport:
        """Rows of the index skipped (and repairs applied) while parsing it, filled at construction."""
        report = self.__dict__.get("_load_report")
        if report is None:  # a subclass that did not call super().__init__()
            report = self.__dict__["_load_report"] = SkipReport()
        return report

    @load_report.setter
    def load_report(self, report: SkipReport) -> None:
        self.__dict__["_load_report"] = report

    # -- the Dataset protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, i: int) -> Sample:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    # -- index-only access ----------------------------------------------------------------------------
    def caption_at(self, i: int) -> str | None:
        """The (cleaned) caption of item ``i`` without decoding media."""
        raise NotImplementedError(f"{type(self).__name__} must implement caption_at or captions")

    def label_at(self, i: int) -> int | None:
        """The label of item ``i`` without decoding media."""
        raise NotImplementedError(f"{type(self).__name__} must implement label_at or labels")

    def captions(self) -> Iterator[str]:
        """Every non-empty caption, in index order, without decoding images or audio."""
        if "text" not in self.modalities:
            return
        for i in range(len(self)):
            c = self.caption_at(i)
            if c is not None:
                yield c

    def labels(self) -> list[int | None]:
        """The label of every item (``None`` = unlabeled), without decoding media."""
        if self.label_names is None:
            return [None] * len(self)
        return [self.label_at(i) for i in range(len(self))]

    # -- conveniences -----------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, int) and hasattr(i, "__index__"):
            i = i.__index__()
        if not isinstance(i, int):
            raise TypeError(f"{self.name}: index must be an int, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: index {i} out of range for {n} items")
        return i

    def try_get(self, i: int, report: SkipReport) -> Sample | None:
        """``self[i]``, or ``None`` after recording the BadItem's reason in ``report``."""
        try:
            return self[i]
        except BadItem as e:
            report.skip_drawn(e.uid, e.reason, e.detail)
            return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, modalities={self.modalities}, "
            f"classes={self.num_classes}, skipped_at_load={self.load_report.total_skipped})"
        )


def _as_int(raw: RawLabel) -> int | None:
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and _INT_RE.match(raw.strip()):
        return int(raw.strip())
    return None


def resolve_labels(
    raw: Sequence[RawLabel],
    label_names: Sequence[str] | None,
    uids: Sequence[str],
    report: SkipReport,
) -> tuple[list[int | None], list[bool], list[str] | None]:
    """Map raw labels to indices (rule in the module docstring).

    Returns ``(labels, keep, label_names)``: ``keep[k]`` is False for rows skipped as
    ``"unknown_label"`` (recorded in ``report``).
    """
    if len(raw) != len(uids):
        raise ValueError(f"{len(raw)} labels for {len(uids)} uids")
    present = [r for r in raw if r is not None and r != ""]
    names: list[str] | None
    int_mode = False  # labels are indices, not names
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise ValueError(f"label_names contains duplicates: {names}")
    elif not present:
        names = None
    elif all(_as_int(r) is not None for r in present):
        int_mode = True
        top = max(int(_as_int(r) or 0) for r in present)
        names = [str(k) for k in range(top + 1)]
    else:
        names = sorted({str(r).strip() for r in present})
    index = {} if names is None else {n: k for k, n in enumerate(names)}

    labels: list[int | None] = []
    keep: list[bool] = []
    for r, uid in zip(raw, uids):
        if r is None or r == "":
            labels.append(None)
            keep.append(True)
            continue
        as_int = _as_int(r)
        k: int | None = None
        if not int_mode and str(r).strip() in index:
            k = index[str(r).strip()]
        elif as_int is not None and names is not None and 0 <= as_int < len(names):
            k = as_int
        if k is None:
            report.skip(uid, "unknown_label", f"{r!r} not among {len(names or [])} classes")
        labels.append(k)
        keep.append(k is not None)
    return labels, keep, names


def caption_or_drop(text: object, uid: str, report: SkipReport) -> str | None:
    """Clean a caption at index time; an empty one is dropped and counted as ``empty_caption_dropped``.

    A non-string caption raises BadItem ``bad_caption`` (the caller records it as a skip).
    """
    if text is None:
        return None
    cleaned = clean_caption(text, uid)  # type: ignore[arg-type]
    if cleaned is None:
        report.repair("empty_caption_dropped")
    return cleaned


class RecordDataset(MultimodalDataset):
    """A dataset whose parsed index is a list ``self._records`` of records that carry ``caption``
    and ``label`` attributes (one record per item): length and index-only access come for free."""

    _records: Sequence = ()

    def __len__(self) -> int:
        return len(self._records)

    def record(self, i: int):
        return self._records[self._check_index(i)]

    def caption_at(self, i: int) -> str | None:
        return self.record(i).caption

    def label_at(self, i: int) -> int | None:
        return self.record(i).label
