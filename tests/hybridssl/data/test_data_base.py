"""Tests for hybridssl.data.base: the label rule and the base-class contract."""

from __future__ import annotations

import pytest

from hybridssl.data.base import MultimodalDataset, caption_or_drop, check_modalities, resolve_labels
from hybridssl.data.sample import BadItem, Sample, SkipReport


def _resolve(raw, names=None):
    report = SkipReport()
    labels, keep, out_names = resolve_labels(raw, names, [f"u{k}" for k in range(len(raw))], report)
    return labels, keep, out_names, report


def test_names_sorted_when_not_given() -> None:
    labels, keep, names, report = _resolve(["dog", "cat", None, "bird", "cat", ""])
    assert names == ["bird", "cat", "dog"]
    assert labels == [2, 1, None, 0, 1, None] and all(keep) and report.total_skipped == 0


def test_mixed_ints_and_names_are_names() -> None:
    labels, _, names, _ = _resolve(["cat", 3, "10"])
    assert names == ["10", "3", "cat"]
    assert labels == [2, 1, 0]


def test_all_int_labels_keep_indices() -> None:
    labels, keep, names, report = _resolve([2, "0", " 5 ", None, -1])
    assert names == ["0", "1", "2", "3", "4", "5"]
    assert labels[:4] == [2, 0, 5, None]
    assert keep == [True, True, True, True, False]
    assert report.skipped["unknown_label"] == 1 and report.examples["unknown_label"][0].startswith("u4")


def test_given_names() -> None:
    labels, keep, names, report = _resolve(["b", 0, "2", "zebra", 7, "1"], names=["a", "b", "c"])
    assert names == ["a", "b", "c"]
    assert labels == [1, 0, 2, None, None, 1]
    assert keep == [True, True, True, False, False, True]
    assert report.skipped["unknown_label"] == 2
    # a name that looks like an integer is matched as a name first
    labels, _, _, _ = _resolve(["1"], names=["1", "0"])
    assert labels == [0]


def test_no_labels_and_errors() -> None:
    labels, keep, names, _ = _resolve([None, ""])
    assert names is None and labels == [None, None] and keep == [True, True]
    with pytest.raises(ValueError, match="duplicates"):
        _resolve(["a"], names=["a", "a"])
    with pytest.raises(ValueError, match="labels for"):
        resolve_labels(["a"], None, [], SkipReport())


def test_check_modalities_and_caption_or_drop() -> None:
    assert check_modalities(["text", "image"]) == ("image", "text")
    with pytest.raises(ValueError, match="unknown modalities"):
        check_modalities(["video"])
    report = SkipReport()
    assert caption_or_drop("  hi  there ", "u", report) == "hi there"
    assert caption_or_drop("  ", "u", report) is None
    assert caption_or_drop(None, "u", report) is None
    assert report.repaired["empty_caption_dropped"] == 1
    with pytest.raises(BadItem):
        caption_or_drop(3, "u", report)


class _Tiny(MultimodalDataset):
    """Does not call super().__init__(): load_report must still exist."""

    modalities = ("text",)
    label_names = ["a", "b"]

    def __init__(self) -> None:
        self._caps = ["x", None, "z"]

    def __len__(self) -> int:
        return 3

    def caption_at(self, i: int) -> str | None:
        return self._caps[self._check_index(i)]

    def label_at(self, i: int) -> int | None:
        return self._check_index(i) % 2

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        if self._caps[i] is None:
            raise BadItem(str(i), "no_usable_modality", "test")
        return Sample(uid=str(i), caption=self._caps[i])


def test_base_contract() -> None:
    d = _Tiny()
    assert d.load_report.total_skipped == 0
    assert list(d.captions()) == ["x", "z"]
    assert d.labels() == [0, 1, 0]
    assert d.num_classes == 2
    assert d[-1].caption == "z"
    with pytest.raises(IndexError):
        d[3]
    with pytest.raises(TypeError):
        d["0"]  # type: ignore[index]
    report = SkipReport()
    assert d.try_get(1, report) is None and report.skipped["no_usable_modality"] == 1
    assert d.try_get(0, report).caption == "x"
    assert "n=3" in repr(d)


def test_abstract_methods_raise() -> None:
    class Bare(MultimodalDataset):
        modalities = ("text",)

    b = Bare()
    with pytest.raises(NotImplementedError):
        len(b)
    with pytest.raises(NotImplementedError):
        b[0]
    with pytest.raises(NotImplementedError):
        b.caption_at(0)
    with pytest.raises(NotImplementedError):
        b.label_at(0)
