"""Image–caption pairs in the COCO captions format (Chen et al., 2015, "Microsoft COCO Captions:
Data Collection and Evaluation Server", arXiv:1504.00325).

Annotation file layout::

    {"images":      [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", ...}, ...],
     "annotations": [{"id": 770337, "image_id": 391895, "caption": "A man riding ..."}, ...]}

Default: one sample per caption annotation (uid ``"<image_id>#<annotation id>"``), in annotation-file
order. ``one_caption_per_image=True``: one sample per image entry (uid ``"<image_id>"``), in image-file
order, with its first non-empty caption in annotation order; an image without any caption is kept as an
image-only sample. Either way ``Sample.paraphrases`` holds the image's other non-empty captions (in
annotation order): COCO's five captions per image describe one picture in five wordings.

Index-time skips (``load_report``): ``malformed_row`` (an image or annotation entry with missing or
wrongly-typed fields, a duplicate image id), ``unknown_image_id`` (an annotation whose image is not
listed), ``empty_caption`` (per-caption mode: an annotation whose caption is empty after cleaning — the
pair would carry no text). In per-image mode empty captions are passed over and counted as the repair
``empty_caption_dropped``. A missing or unreadable image file is a decode-time BadItem. No labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.readers import clean_caption, read_image
from hybridssl.data.sample import BadItem, Sample


@dataclass(frozen=True)
class _Pair:
    uid: str
    image_id: int | str
    file_name: str
    caption: str | None
    annotation_id: int | str | None


def _is_id(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


class CocoCaptionsDataset(MultimodalDataset):
    """COCO-format captions (see the module docstring)."""

    def __init__(
        self,
        annotations_json: str | Path,
        images_dir: str | Path,
        one_caption_per_image: bool = False,
        max_pixels: int = 64_000_000,
    ) -> None:
        super().__init__()
        self.annotations_json = Path(annotations_json)
        self.images_dir = Path(images_dir)
        if not self.annotations_json.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.annotations_json}")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder not found: {self.images_dir}")
        self.name = self.annotations_json.stem
        self.modalities = ("image", "text")
        self.label_names = None
        self.one_caption_per_image = one_caption_per_image
        self.max_pixels = max_pixels

        doc = self._load_json()
        images = self._index_images(doc["images"])
        annotations = list(self._annotations(images, doc["annotations"]))
        #: image id → its non-empty captions, as (annotation id, caption): the paraphrases of each other
        self._captions: dict[int | str, list[tuple[int | str, str]]] = {}
        for image_id, ann_id, caption in annotations:
            if caption is not None:
                self._captions.setdefault(image_id, []).append((ann_id, caption))
        per = self._per_image if one_caption_per_image else self._per_caption
        self._pairs = per(images, annotations)

    # -- parsing ------------------------------------------------------------------------------------------
    def _load_json(self) -> dict[str, Any]:
        try:
            with open(self.annotations_json, encoding="utf-8") as f:
                doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.annotations_json}: not a valid JSON file ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{self.annotations_json}: expected a JSON object at top level")
        for key in ("images", "annotations"):
            if not isinstance(doc.get(key), list):
                raise ValueError(f"{self.annotations_json}: missing list {key!r} (not a COCO captions file?)")
        return doc

    def _index_images(self, entries: list[Any]) -> dict[int | str, str]:
        """``{image id: file_name}`` in file order; bad entries go to ``load_report``."""
        images: dict[int | str, str] = {}
        for k, e in enumerate(entries):
            if not isinstance(e, dict) or not _is_id(e.get("id")) or not isinstance(e.get("file_name"), str):
                self.load_report.skip(f"images[{k}]", "malformed_row", "image entry needs 'id' and 'file_name'")
            elif e["id"] in images:
                self.load_report.skip(str(e["id"]), "malformed_row", "duplicate image id")
            else:
                images[e["id"]] = e["file_name"]
        return images

    def _annotations(
        self, images: dict[int | str, str], entries: list[Any]
    ) -> Iterator[tuple[int | str, int | str, str | None]]:
        """Valid ``(image_id, annotation id, raw caption)``; bad entries go to ``load_report``."""
        for k, a in enumerate(entries):
            if not isinstance(a, dict) or not _is_id(a.get("image_id")) or "caption" not in a:
                self.load_report.skip(f"annotations[{k}]", "malformed_row", "needs 'image_id' and 'caption'")
                continue
            ann_id = a.get("id", k) if _is_id(a.get("id", k)) else k
            uid = f"{a['image_id']}#{ann_id}"
            if a["image_id"] not in images:
                self.load_report.skip(uid, "unknown_image_id", f"image_id {a['image_id']!r} not in 'images'")
                continue
            try:
                caption = clean_caption(a["caption"], uid)
            except BadItem as e:
                self.load_report.skip(uid, "malformed_row", e.detail)
                continue
            yield a["image_id"], ann_id, caption

    def _per_caption(self, images: dict[int | str, str], annotations: list[tuple[Any, Any, str | None]]) -> list[_Pair]:
        pairs = []
        for image_id, ann_id, caption in annotations:
            uid = f"{image_id}#{ann_id}"
            if caption is None:
                self.load_report.skip(uid, "empty_caption", "caption empty after cleaning")
                continue
            pairs.append(_Pair(uid, image_id, images[image_id], caption, ann_id))
        return pairs

    def _per_image(self, images: dict[int | str, str], annotations: list[tuple[Any, Any, str | None]]) -> list[_Pair]:
        first: dict[int | str, tuple[str, int | str]] = {}
        for image_id, ann_id, caption in annotations:
            if caption is None:
                self.load_report.repair("empty_caption_dropped")
            elif image_id not in first:
                first[image_id] = (caption, ann_id)
        pairs = []
        for image_id, file_name in images.items():
            caption, ann_id = first.get(image_id, (None, None))  # type: ignore[assignment]  # no caption: None
            pairs.append(_Pair(str(image_id), image_id, file_name, caption, ann_id))
        return pairs

    # -- dataset ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._pairs)

    def caption_at(self, i: int) -> str | None:
        return self._pairs[self._check_index(i)].caption

    def label_at(self, i: int) -> int | None:
        self._check_index(i)
        return None

    def __getitem__(self, i: int) -> Sample:
        p = self._pairs[self._check_index(i)]
        image = read_image(self.images_dir / p.file_name, p.uid, max_pixels=self.max_pixels)  # (H, W, 3)
        meta: dict[str, Any] = {"repairs": [], "image_id": p.image_id, "file_name": p.file_name, "annotation_id": p.annotation_id}
        others = tuple(c for a, c in self._captions.get(p.image_id, ()) if a != p.annotation_id)
        return Sample(uid=p.uid, image=image, caption=p.caption, meta=meta, paraphrases=others if p.caption else ())
