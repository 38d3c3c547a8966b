"""Paired data where many users keep it: a Hugging Face ``datasets`` dataset saved with
``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``), or a folder of Parquet files — read locally,
never downloaded (``--data hf:PATH[,image=COL][,caption=COL][,audio=COL][,label=COL][,id=COL][,split=NAME]``).

Columns: each modality comes from the column named in the spec, else the first present of
:data:`DEFAULT_COLUMNS`. An image or audio cell may be a ``datasets.Image`` / ``Audio`` value
(read with ``decode=False``: ``{"bytes", "path"}``), raw bytes, or a file path (relative paths
resolve against the dataset folder and, as for manifests, may not lead outside it unless
``allow_outside_paths``); audio may also be ``{"array", "sampling_rate"}``. Media are decoded by
hssl's own readers (:mod:`hybridssl.data.readers`), so bad cells follow the same repair-or-refuse
rules and reasons as files. Labels: a ``ClassLabel`` column gives its names; other values follow
:func:`~hybridssl.data.base.resolve_labels`. Index-time accounting (``load_report``): a row with no
image, no audio and no non-empty caption is ``no_modality``; ``unknown_label`` as elsewhere; an empty
caption beside other media is dropped (repair ``empty_caption_dropped``). Parquet files are
converted to Arrow once by ``datasets`` (in its cache, ``cache_dir`` to choose it).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridssl.data.base import RecordDataset, check_modalities, resolve_labels
from hybridssl.data.manifest import is_inside
from hybridssl.data.readers import clean_caption, read_audio, read_image, require_usable
from hybridssl.data.sample import BadItem, Sample

DEFAULT_COLUMNS = {"image": ("image", "img", "jpg", "png", "picture"),
                   "caption": ("caption", "text", "sentence", "title", "description"),
                   "audio": ("audio", "wav", "flac", "speech"),
                   "label": ("label", "labels", "class", "category")}


@dataclass
class _Row:
    uid: str
    index: int
    caption: str | None
    label: int | None
    has_image: bool
    has_audio: bool


@contextmanager
def _quiet_datasets():
    """``datasets`` without its progress bars (hssl draws its own), restored afterwards."""
    import datasets

    was = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            datasets.enable_progress_bars()


def load_table(path: Path, split: str | None, cache_dir: str | None = None) -> Any:
    """The ``datasets.Dataset`` at ``path``: saved with ``save_to_disk`` (a DatasetDict needs ``split``
    unless it has a "train" split or just one), or the ``*.parquet`` files under ``path``."""
    import datasets

    with _quiet_datasets():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                names = list(loaded)
                chosen = split or ("train" if "train" in names else names[0] if len(names) == 1 else None)
                if chosen not in loaded:
                    raise ValueError(f"{path} holds the splits {names}; choose one with split=NAME")
                return loaded[chosen]
            if split is not None:
                raise ValueError(f"{path} is a single dataset; it has no split {split!r}")
            return loaded
        files = sorted(str(p) for p in (path.rglob("*.parquet") if path.is_dir() else [path]))
        if not files or not all(f.endswith(".parquet") for f in files):
            raise FileNotFoundError(f"{path} is neither a dataset saved with save_to_disk nor holds .parquet files")
        return datasets.Dataset.from_parquet(files, cache_dir=cache_dir)


class HFDataset(RecordDataset):
    """A saved Hugging Face dataset or a Parquet folder (module docstring)."""

    def __init__(self, path: str | Path, image: str | None = None, caption: str | None = None,
                 audio: str | None = None, label: str | None = None, id: str | None = None,
                 split: str | None = None, label_names: list[str] | None = None, cache_dir: str | None = None,
                 max_pixels: int = 64_000_000, max_seconds: float = 600.0, allow_outside_paths: bool = False) -> None:
        super().__init__()
        import datasets

        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"Hugging Face / Parquet dataset not found: {self.path}")
        self.root = self.path if self.path.is_dir() else self.path.parent
        self.name = self.path.stem
        self.max_pixels, self.max_seconds, self.allow_outside_paths = max_pixels, max_seconds, allow_outside_paths
        table = load_table(self.path, split, cache_dir)
        self.columns = self._map_columns(list(table.column_names), {"image": image, "caption": caption,
                                                                    "audio": audio, "label": label})
        if id is not None and id not in table.column_names:
            raise ValueError(f"{self.path}: no column {id!r} for id= (columns: {table.column_names})")
        for m, kind in (("image", datasets.Image), ("audio", datasets.Audio)):
            col = self.columns.get(m)
            if col is not None and isinstance(table.features[col], kind):
                table = table.cast_column(col, kind(decode=False))   # hssl decodes: its rules, its reasons
        self.table = table.flatten_indices() if getattr(table, "_indices", None) is not None else table
        self._records = self._index(self.table, id, label_names)
        present = {m for r in self._records for m, v in (("image", r.has_image), ("text", r.caption),
                                                          ("audio", r.has_audio)) if v}
        self.modalities = check_modalities(sorted(present))

    def _map_columns(self, names: list[str], asked: dict[str, str | None]) -> dict[str, str]:
        missing = {m: c for m, c in asked.items() if c is not None and c not in names}
        if missing:
            raise ValueError(f"{self.path}: no column {', '.join(f'{c!r} (for {m}=)' for m, c in missing.items())}; "
                             f"columns: {names}")
        out = {m: c or next((d for d in DEFAULT_COLUMNS[m] if d in names), None) for m, c in asked.items()}
        found = {m: c for m, c in out.items() if c is not None}
        if not {"image", "caption", "audio"} & set(found):
            raise ValueError(f"{self.path}: no image, caption or audio column among {names}; name them with "
                             f"image=COL, caption=COL or audio=COL")
        return found

    def _index(self, table: Any, id_col: str | None, label_names: list[str] | None) -> list[_Row]:
        import datasets
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(table)
        arrow = table.data                                # the Arrow table (media bytes stay on disk)

        def column(name: str | None) -> list[Any]:
            return arrow.column(name).to_pylist() if name else [None] * n

        def present(name: str | None) -> list[bool]:
            """Which rows hold a media cell, from Arrow validity alone (no bytes are read into Python)."""
            if name is None:
                return [False] * n
            col = arrow.column(name)
            valid = pc.is_valid(col)
            if pa.types.is_struct(col.type):              # datasets' Image / Audio storage: {bytes, path}
                fields = [f.name for f in col.type if f.name in ("bytes", "path", "array")]
                if fields:
                    inner = [pc.is_valid(pc.struct_field(col, f)) for f in fields]
                    any_inner = inner[0]
                    for other in inner[1:]:
                        any_inner = pc.or_(any_inner, other)
                    valid = pc.and_(valid, any_inner)
            return [bool(v) for v in valid.to_pylist()]

        uids = [str(v) for v in column(id_col)] if id_col else [f"{self.name}:{i}" for i in range(n)]
        has_image, has_audio = present(self.columns.get("image")), present(self.columns.get("audio"))
        captions = column(self.columns.get("caption"))
        label_col = self.columns.get("label")
        raw = column(label_col)
        feature = table.features[label_col] if label_col else None
        if isinstance(feature, datasets.ClassLabel):
            label_names = label_names or list(feature.names)
            raw = [None if v is None or v < 0 else int(v) for v in raw]
        rows: list[_Row | None] = []
        for i in range(n):
            try:
                caption = clean_caption(captions[i], uids[i])
            except BadItem as e:
                self.load_report.skip(uids[i], e.reason, e.detail)
                rows.append(None)
                continue
            if caption is None and captions[i] is not None and (has_image[i] or has_audio[i]):
                self.load_report.repair("empty_caption_dropped")
            if caption is None and not has_image[i] and not has_audio[i]:
                self.load_report.skip(uids[i], "no_modality", f"row {i}")
                rows.append(None)
                continue
            rows.append(_Row(uids[i], i, caption, None, has_image[i], has_audio[i]))
        kept = [r for r in rows if r is not None]
        labels, keep, self.label_names = resolve_labels([raw[r.index] for r in kept], label_names,
                                                        [r.uid for r in kept], self.load_report)
        for r, lab in zip(kept, labels):
            r.label = lab
        return [r for r, k in zip(kept, keep) if k]

    def _media(self, cell: Any, uid: str) -> Any:
        """bytes or a Path (checked against the dataset folder) for one image / audio cell."""
        if isinstance(cell, dict):
            cell = cell.get("bytes") or cell.get("path")
        if isinstance(cell, (bytes, bytearray)):
            return bytes(cell)
        if isinstance(cell, str) and cell:
            p = Path(cell).expanduser()
            p = p if p.is_absolute() else self.root / p
            if not self.allow_outside_paths and not is_inside(p, self.root):
                raise BadItem(uid, "outside_root", f"{cell} leads outside {self.root}")
            return p
        raise BadItem(uid, "missing_file", f"an empty media cell ({type(cell).__name__})")

    def __getitem__(self, i: int) -> Sample:
        row = self.record(i)
        cells = self.table[row.index]
        image = audio = rate = None
        repairs: list[str] = []
        if row.has_image:
            image = read_image(self._media(cells[self.columns["image"]], row.uid), row.uid, self.max_pixels)
        if row.has_audio:
            cell = cells[self.columns["audio"]]
            if isinstance(cell, dict) and cell.get("array") is not None:
                audio, rate = self._decoded_audio(cell, row.uid)
            else:
                audio, rate, repairs = read_audio(self._media(cell, row.uid), row.uid, self.max_seconds)
        meta: dict[str, Any] = {"repairs": repairs, "row": row.index, "source": str(self.path)}
        if row.label is not None and self.label_names is not None:
            meta["label_name"] = self.label_names[row.label]
        return require_usable(Sample(uid=row.uid, image=image, caption=row.caption, audio=audio, sample_rate=rate,
                                     label=row.label, meta=meta))

    def _decoded_audio(self, cell: dict[str, Any], uid: str) -> tuple[np.ndarray, int]:
        wave = np.asarray(cell["array"], dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=0 if wave.shape[0] < wave.shape[1] else 1)
        rate = cell.get("sampling_rate")
        if wave.ndim != 1 or wave.size == 0 or not isinstance(rate, int) or rate <= 0:
            raise BadItem(uid, "unreadable_audio", "an audio array that is not (T,) with a positive sampling_rate")
        if not np.isfinite(wave).all():
            raise BadItem(uid, "non_finite_audio", f"{int((~np.isfinite(wave)).sum())} non-finite samples")
        return np.ascontiguousarray(wave), rate


def parse_hf_spec(rest: str) -> tuple[str, dict[str, Any]]:
    """``"PATH,image=img,caption=text"`` → ("PATH", {"image": "img", "caption": "text"}); the path is
    everything before the first ``,KEY=`` (so a path may hold commas, not ``,key=``)."""
    keys = ("image", "caption", "audio", "label", "id", "split", "cache_dir")
    path, options = rest, dict[str, Any]()
    cut = min((rest.find(f",{k}=") for k in keys if f",{k}=" in rest), default=-1)
    if cut >= 0:
        path = rest[:cut]
        for item in rest[cut + 1 :].split(","):
            key, sep, value = item.partition("=")
            if not sep or key not in keys or not value:
                raise ValueError(f"hf: option {item!r} is not one of {', '.join(f'{k}=VALUE' for k in keys)}")
            if key in options:
                raise ValueError(f"hf: option {key}= given twice")
            options[key] = value
    if not path:
        raise ValueError("hf: give the dataset folder, e.g. hf:data/pairs or hf:data/pairs,image=img,caption=text")
    return os.path.expanduser(path), options
