"""Open any supported dataset from a one-line spec string (used by configs and the CLI).

Forms::

    builtin                                  the generated dataset (hybridssl.data.synthetic.SyntheticScenes)
    builtin:KEY=VAL,KEY=VAL                  ... with constructor arguments (int / float / bool / str)
    manifest:PATH                            JSONL or CSV manifest (ManifestDataset)
    coco:ANNOTATIONS_JSON:IMAGES_DIR         COCO captions (CocoCaptionsDataset)
    avclips:CSV                              VGGSound-style clip list (AudioVisualClipsDataset)
    features:NPZ                             precomputed feature sequences (FeatureSequenceDataset)
    shards:DIR_OR_GLOB                       tar shards written by ``hssl shard`` (ShardDataset): the folder
                                             with index.json, or a glob of some of its .tar files
    hf:PATH[,image=COL,caption=COL,...]      a Hugging Face dataset saved with save_to_disk, or a folder of
                                             Parquet files (HFDataset; options image= caption= audio= label=
                                             id= split= cache_dir=)
    fashion-mnist[:ROOT]                     Fashion-MNIST IDX files (Debian dataset-fashion-mnist)
    tuxpaint[:ROOT]                          Tux Paint stamps: image + caption + speech (tuxpaint-stamps-default)
    openclipart[:ROOT]                       Openclipart PNGs with their titles (openclipart-png)
    digits                                   scikit-learn's 8×8 digits

For ``coco`` the annotation path ends at the first ``".json:"`` when there is one (so either path may
contain ``":"``), otherwise at the first ``":"``. Extra ``**kwargs`` go to the constructor; for
``builtin`` a key given both in the spec and in kwargs is a ValueError. ``builtin`` defaults:
:data:`BUILTIN_DEFAULTS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.specs import FORMS

#: real offline datasets (Debian packages, see scripts/install_datasets.sh): spec prefix → (module, class)
OFFLINE = {
    "fashion-mnist": ("hybridssl.data.fashion_mnist", "FashionMNIST"),
    "tuxpaint": ("hybridssl.data.tuxpaint", "TuxPaintStamps"),
    "openclipart": ("hybridssl.data.openclipart", "Openclipart"),
    "digits": ("hybridssl.data.digits", "SklearnDigits"),
}
BUILTIN_DEFAULTS: dict[str, Any] = {"size": 1000, "seed": 0}


def _forms() -> str:
    return ", ".join(repr(f) for f in FORMS)


def parse_value(text: str) -> int | float | bool | str:
    """``"3"`` → 3, ``"0.5"`` / ``"1e-3"`` → float, ``"true"`` / ``"false"`` → bool, else the string."""
    t = text.strip()
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return t


def parse_builtin_args(rest: str) -> dict[str, Any]:
    """``"size=100,seed=1,split=val"`` → ``{"size": 100, "seed": 1, "split": "val"}``."""
    out: dict[str, Any] = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"builtin argument {item!r} is not KEY=VAL (spec forms: {_forms()})")
        if key in out:
            raise ValueError(f"builtin argument {key!r} given twice")
        out[key] = parse_value(val)
    return out


def _existing(path: str, what: str) -> Path:
    if not path:
        raise ValueError(f"empty {what} path in dataset spec (forms: {_forms()})")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


def _open_builtin(rest: str | None, kwargs: dict[str, Any]) -> MultimodalDataset:
    args = parse_builtin_args(rest) if rest else {}
    both = sorted(set(args) & set(kwargs))
    if both:
        raise ValueError(f"builtin arguments {both} given both in the spec and as keyword arguments")
    merged = {**BUILTIN_DEFAULTS, **args, **kwargs}
    synthetic = importlib.import_module("hybridssl.data.synthetic")  # lazy: only builtin needs it
    return synthetic.SyntheticScenes(**merged)


def _open_offline(prefix: str, root: str | None, kwargs: dict[str, Any]) -> MultimodalDataset:
    """``fashion-mnist[:ROOT]`` etc.: ROOT defaults to where the Debian package installs the data."""
    if root is not None:
        if prefix == "digits":
            raise ValueError("the 'digits' spec takes no path (the data ship with scikit-learn)")
        if not root:
            raise ValueError(f"empty {prefix} root in dataset spec (forms: {_forms()})")
        if "root" in kwargs:
            raise ValueError(f"{prefix} root given both in the spec and as a keyword argument")
        kwargs = {**kwargs, "root": Path(root).expanduser()}
    module, cls = OFFLINE[prefix]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def open_dataset(spec: str, **kwargs: Any) -> MultimodalDataset:
    """The dataset described by ``spec`` (forms in the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty dataset spec; valid forms: {_forms()}")
    prefix, sep, rest = spec.strip().partition(":")
    if prefix == "builtin":
        return _open_builtin(rest if sep else None, kwargs)
    if prefix in OFFLINE:
        return _open_offline(prefix, rest if sep else None, kwargs)
    if not sep:
        raise ValueError(f"dataset spec {spec!r} has no 'PREFIX:'; valid forms: {_forms()}")
    if prefix == "manifest":
        from hybridssl.data.manifest import ManifestDataset

        return ManifestDataset(_existing(rest, "manifest"), **kwargs)
    if prefix == "coco":
        from hybridssl.data.coco import CocoCaptionsDataset

        cut = rest.find(".json:")
        ann, images = (rest[: cut + 5], rest[cut + 6 :]) if cut >= 0 else rest.partition(":")[::2]
        return CocoCaptionsDataset(_existing(ann, "COCO annotation file"), _existing(images, "COCO images folder"),
                                   **kwargs)
    if prefix == "avclips":
        from hybridssl.data.avclips import AudioVisualClipsDataset

        return AudioVisualClipsDataset(_existing(rest, "clip list"), **kwargs)
    if prefix == "features":
        from hybridssl.data.features import FeatureSequenceDataset

        return FeatureSequenceDataset(_existing(rest, "feature file"), **kwargs)
    if prefix == "hf":
        from hybridssl.data.hf import HFDataset, parse_hf_spec

        path, options = parse_hf_spec(rest)
        return HFDataset(path, **options, **kwargs)
    if prefix == "shards":
        from hybridssl.data.shards import ShardDataset

        return ShardDataset(rest, **kwargs)
    raise ValueError(f"unknown dataset spec prefix {prefix!r} in {spec!r}; valid forms: {_forms()}")
