"""The bundle schema (``manifest.json``, format_version 1), defined once, torch-free.

The writer (``export``) builds a :class:`Manifest` and writes :meth:`Manifest.to_dict`; the reader
(:mod:`edge_runtime.bundle`) refuses what :func:`check_manifest` refuses. ``docs/bundle.md`` documents
these fields and a test holds it to them (every field of every dataclass here is documented, every
documented key is one of them). Everything the two sides must agree on lives here: names, precisions,
back ends, dtypes, bounds (:data:`LIMITS`), file names (:func:`model_file_name`) and the tensor
signature of each tower (:func:`tower_io`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from edge_runtime.modalities import (
    MODALITIES,
    SEQUENCE_PREFIX,
    TIME,
    is_modality,
    is_sequence,
    modality_kind,
    sequence_stream,
)

FORMAT = "hssl-bundle"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
TOKENIZER_FILE = "tokenizer.json"
README_FILE = "README.md"
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("onnx", "onnxruntime", "openvino", "tensorrt")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")
#: The back end each export target runs on.
TARGET_BACKEND = {"onnx": "onnxruntime", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}
DTYPES = ("float32", "float16", "int64", "int32")
#: OpenVINO CPU inference precisions a bundle may ask for (``INFERENCE_PRECISION_HINT``).
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
#: What hssl's exporter measures its parity gate at and writes into every OpenVINO tower entry. The
#: CPU plugin's own default is bf16 on CPUs with AMX / AVX-512-BF16 (2e-3 off the fp32 graph) and f32
#: elsewhere, so leaving the hint unset makes the same bundle compute differently per CPU.
DEFAULT_INFERENCE_PRECISION = "f32"
MAX_MANIFEST_BYTES = 4 << 20
#: Bounds a manifest must respect (docs/bundle.md, "Bounds").
LIMITS = {"max_length": 4096, "image_size": 1024, "image_resize": 4096, "clip_seconds": 60.0, "n_mels": 512,
          "dim": 65536, "elements": 1 << 28, "depth": 32, "max_frames": 16384, "sequence_dim": 8192}
#: The dtype of every input of each modality's graph (a sequence tower: ``frames`` float32, ``frame_mask`` int64).
INPUT_DTYPES = {"image": ("float32",), "audio": ("float32",), "text": ("int64",), "sequence": ("float32", "int64")}
BATCH = "batch"


class BundleError(ValueError):
    """A bundle that is missing, malformed, incomplete or tampered with."""


def input_dtypes(modality: str) -> tuple[str, ...]:
    return INPUT_DTYPES[modality_kind(modality)] if is_modality(modality) else DTYPES


def model_file_name(modality: str, target: str, precision: str) -> dict[str, str]:
    """File names of one tower at one precision: ``{"model": …[, "weights": …]}``
    (``<m>[.<p>].onnx``; OpenVINO ``<m>[.<p>].xml`` + ``.bin``; TensorRT ``<m>.<p>.plan``)."""
    if target not in TARGETS or precision not in PRECISIONS:
        raise ValueError(f"unknown target/precision {target!r}/{precision!r}")
    if target == "tensorrt":
        return {"model": f"{modality}.{precision}.plan"}
    suffix = "" if precision == "fp32" else f".{precision}"
    if target == "openvino":
        return {"model": f"{modality}{suffix}.xml", "weights": f"{modality}{suffix}.bin"}
    return {"model": f"{modality}{suffix}.onnx"}


# ----------------------------------------------------------------------------- the manifest, as types


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints and ``"batch"`` (the one dynamic axis)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class TowerIO:
    """The tensor signature of one tower."""

    modality: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def tower_io(modality: str, spec: Any, embed_dim: int) -> TowerIO:
    """The signature every tower of ``modality`` has, from the preprocessing spec
    (:class:`edge_runtime.spec.PreprocessSpec`): image ``pixels`` (B, 3, S, S) float32; text
    ``input_ids`` and ``attention_mask`` (B, L) int64 (1 = real token); audio ``log_mel``
    (B, 1, M, T) float32; a sequence tower ``frames`` (B, T, D) float32 and ``frame_mask`` (B, T)
    int64 (1 = real frame), T dynamic (a multiple of the stream's ``patch``, at most ``max_frames``
    rounded up to it); every tower outputs ``embedding`` (B, E) float32, L2-normalised."""
    if modality == "image":
        s = spec.image.size
        inputs: tuple[TensorSpec, ...] = (TensorSpec("pixels", (BATCH, 3, s, s), "float32"),)
    elif modality == "text":
        n = spec.text.max_length
        inputs = (TensorSpec("input_ids", (BATCH, n), "int64"), TensorSpec("attention_mask", (BATCH, n), "int64"))
    elif modality == "audio":
        inputs = (TensorSpec("log_mel", (BATCH, 1, spec.audio.n_mels, spec.audio.num_frames), "float32"),)
    elif is_sequence(modality):
        dim = spec.sequences[sequence_stream(modality)].dim
        inputs = (TensorSpec("frames", (BATCH, TIME, dim), "float32"), TensorSpec("frame_mask", (BATCH, TIME), "int64"))
    else:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return TowerIO(modality, inputs, (TensorSpec("embedding", (BATCH, embed_dim), "float32"),))


@dataclass(frozen=True)
class TowerEntry:
    """``modalities.<m>`` (with ``inputs``/``outputs``) or ``variants.<m>.<precision>`` (without):
    the tower's files by role (``model``, OpenVINO ``weights``), fixed-batch copies (``static``:
    batch → ``{"model": file}``), the back end and, for OpenVINO, the inference precision."""

    files: dict[str, str]
    backend: str
    precision: str | None = None
    inference_precision: str | None = None
    static: dict[str, dict[str, str]] | None = None
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("inputs", "outputs"):
            if d[key] is not None:
                d[key] = [t.to_dict() for t in d[key]]
        return _without_none(d)


@dataclass(frozen=True)
class TokenizerEntry:
    file: str
    max_length: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "max_length": self.max_length}


@dataclass(frozen=True)
class Labels:
    """Class names, the templates that read ``template.format(name)`` for every class, and each
    class's full prompt list (synonyms included; a reader averages their embeddings per class)."""

    names: list[str]
    templates: list[str] = field(default_factory=list)
    prompts: dict[str, list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none({"names": list(self.names), "templates": list(self.templates),
                              "prompts": {k: list(v) for k, v in self.prompts.items()} if self.prompts else None})


@dataclass(frozen=True)
class Head:
    """A classifier output of one tower: ``output`` is one of its graph outputs, ``names`` its classes."""

    modality: str
    output: str
    names: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "output": self.output, "names": list(self.names)}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``. ``files`` (every file's sha256) is filled in by the writer at commit."""

    target: str
    precision: str
    embed_dim: int
    modalities: dict[str, TowerEntry]
    preprocessing: dict[str, Any]
    tokenizer: TokenizerEntry | None = None
    labels: Labels | None = None
    head: Head | None = None
    variants: dict[str, dict[str, TowerEntry]] | None = None
    logit_scale: float | None = None
    source: dict[str, Any] | None = None
    created: str | None = None
    hssl_version: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": self.format, "format_version": self.format_version, "target": self.target,
                             "precision": self.precision, "embed_dim": self.embed_dim,
                             "modalities": {m: e.to_dict() for m, e in self.modalities.items()},
                             "variants": {m: {p: e.to_dict() for p, e in per.items()} for m, per in self.variants.items()}
                             if self.variants else None,
                             "preprocessing": self.preprocessing,
                             "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
                             "labels": self.labels.to_dict() if self.labels else None,
                             "head": self.head.to_dict() if self.head else None}
        optional = {"logit_scale": self.logit_scale, "source": self.source, "created": self.created,
                    "hssl_version": self.hssl_version}
        return {**d, **_without_none(optional), "files": dict(self.files)}


#: Every key the schema defines, per object (what docs/bundle.md must document).
SCHEMA_KEYS = {cls.__name__: tuple(f.name for f in fields(cls))
               for cls in (Manifest, TowerEntry, TensorSpec, TokenizerEntry, Labels, Head)}


# ----------------------------------------------------------------------------- checks (the reader's)


def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise BundleError(f"{path}: {msg}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_manifest(m: Any, path: Path) -> None:
    """Structural checks of a parsed manifest (see docs/bundle.md)."""
    _need(isinstance(m, dict), path, "the manifest must be a JSON object")
    _need(m.get("format") == FORMAT, path, f"format is {m.get('format')!r}, expected {FORMAT!r}")
    version = m.get("format_version")
    _need(_is_int(version) and version in SUPPORTED_VERSIONS, path,
          f"unsupported format_version {version!r} (this runtime reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
    _need(_is_int(m.get("embed_dim")) and m["embed_dim"] > 0, path, f"embed_dim must be a positive integer, got {m.get('embed_dim')!r}")
    _need(m.get("precision") in PRECISIONS, path, f"precision must be one of {PRECISIONS}, got {m.get('precision')!r}")
    files = m.get("files")
    _need(isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()),
          path, "files must map file names to sha256 hex strings")
    for name, digest in files.items():
        _need(safe_file_name(name), path, f"files lists {name!r}, which is not a plain relative path inside the bundle")
        _need(len(digest) == 64 and all(c in "0123456789abcdef" for c in digest), path, f"files[{name!r}] is not a sha256 hex digest")
    mods = m.get("modalities")
    _need(isinstance(mods, dict) and len(mods) > 0, path, "modalities must be a non-empty object")
    for name, entry in mods.items():
        _need(is_modality(name), path, f"unknown modality {name!r} (valid: {', '.join(MODALITIES)}, {SEQUENCE_PREFIX}<stream>)")
        _check_tower(entry, f"modalities.{name}", m, path, full=True)
    variants = m.get("variants") or {}
    _need(isinstance(variants, dict), path, "variants must be an object")
    for name, per in variants.items():
        _need(name in mods and isinstance(per, dict), path, f"variants.{name} names no modality of the bundle")
        for precision, entry in per.items():
            _need(precision in PRECISIONS, path, f"variants.{name}.{precision}: unknown precision")
            _check_tower(entry, f"variants.{name}.{precision}", m, path, full=False)
    _check_tokenizer(m, path)
    _check_labels(m.get("labels"), path)
    _check_head(m, path)
    _need(isinstance(m.get("preprocessing"), dict), path, "preprocessing must be an object (PreprocessSpec.to_dict())")
    scale = m.get("logit_scale")
    _need(scale is None or (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0),
          path, f"logit_scale must be a positive number, got {scale!r}")


def safe_file_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and "\\" not in name and not p.is_absolute() and ".." not in p.parts and name != "manifest.json"


def _check_tower(entry: Any, where: str, m: dict[str, Any], path: Path, full: bool) -> None:
    _need(isinstance(entry, dict), path, f"{where} must be an object")
    files = entry.get("files")
    _need(isinstance(files, dict) and "model" in files and all(isinstance(v, str) for v in files.values()),
          path, f"{where}.files must name at least a 'model' file")
    for key, name in files.items():
        _need(name in m["files"], path, f"{where}.files.{key} refers to {name!r}, which the manifest's files does not list")
    static = entry.get("static") or {}
    _need(isinstance(static, dict) and all(isinstance(b, str) and b.isdigit() and int(b) >= 1 and isinstance(f, dict)
                                           and f.get("model") in m["files"] for b, f in static.items()), path,
          f"{where}.static must map batch sizes to {{\"model\": <a listed file>}}")
    _need(entry.get("backend") is None or entry["backend"] in BACKENDS, path, f"{where}.backend must be one of {BACKENDS}")
    _need(entry.get("precision") is None or entry["precision"] in PRECISIONS, path, f"{where}.precision: unknown precision")
    _need(entry.get("inference_precision") is None or entry["inference_precision"] in INFERENCE_PRECISIONS, path,
          f"{where}.inference_precision must be one of {INFERENCE_PRECISIONS}")
    if not full:
        return
    for key in ("inputs", "outputs"):
        specs = entry.get(key)
        _need(isinstance(specs, list) and len(specs) > 0, path, f"{where}.{key} must be a non-empty list")
        for spec in specs:
            _need(isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec.get("dtype") in DTYPES
                  and isinstance(spec.get("shape"), list) and len(spec["shape"]) > 0
                  and all(isinstance(d, str) or (_is_int(d) and d > 0) for d in spec["shape"]),
                  path, f"{where}.{key}: each entry needs a name, a shape (ints or 'batch') and a dtype in {DTYPES}")
            fixed = [d for d in spec["shape"] if _is_int(d)]
            _need(all(d <= LIMITS["dim"] for d in fixed) and math.prod(fixed) <= LIMITS["elements"], path,
                  f"{where}.{key}.{spec['name']}: shape {spec['shape']} is beyond the bounds (each dimension "
                  f"<= {LIMITS['dim']}, at most {LIMITS['elements']} elements per item)")
    modality = where.split(".")[-1]
    for spec in entry["inputs"]:
        _need(spec["dtype"] in input_dtypes(modality), path,
              f"{where}.inputs.{spec['name']}: dtype {spec['dtype']} (the {modality} tower takes "
              f"{' / '.join(input_dtypes(modality))})")
    out = entry["outputs"][0]
    _need(out["shape"][-1] == m["embed_dim"] and out["dtype"] == "float32", path,
          f"{where}.outputs[0] must be the float32 (batch, {m['embed_dim']}) embedding")


def _check_tokenizer(m: dict[str, Any], path: Path) -> None:
    tok = m.get("tokenizer")
    if "text" in m["modalities"]:
        _need(isinstance(tok, dict), path, "a bundle with a text tower needs a tokenizer entry")
    if tok is None:
        return
    _need(isinstance(tok, dict) and isinstance(tok.get("file"), str) and _is_int(tok.get("max_length"))
          and 3 <= tok["max_length"] <= LIMITS["max_length"], path,
          f"tokenizer must be {{\"file\": ..., \"max_length\": int in [3, {LIMITS['max_length']}]}}")
    _need(tok["file"] in m["files"], path, f"tokenizer refers to {tok['file']!r}, which the manifest's files does not list")


def _check_labels(labels: Any, path: Path) -> None:
    if labels is None:
        return
    _need(isinstance(labels, dict), path, "labels must be an object or null")
    names = labels.get("names")
    _need(names is None or (isinstance(names, list) and all(isinstance(n, str) and n for n in names)), path,
          "labels.names must be a list of non-empty strings")
    templates = labels.get("templates")
    _need(templates is None or (isinstance(templates, list) and all(isinstance(t, str) and _fillable(t) for t in templates)),
          path, "labels.templates must be a list of strings with one '{}' slot")
    prompts = labels.get("prompts")
    _need(prompts is None or (isinstance(prompts, dict) and all(
        isinstance(v, list) and v and all(isinstance(p, str) and p.strip() for p in v) for v in prompts.values())),
        path, "labels.prompts must map label names to non-empty lists of prompts")


def _fillable(template: str) -> bool:
    try:
        return template.format("x") != template
    except (IndexError, KeyError, ValueError):
        return False


def _check_head(m: dict[str, Any], path: Path) -> None:
    head = m.get("head")
    if head is None:
        return
    _need(isinstance(head, dict) and head.get("modality") in m["modalities"] and isinstance(head.get("output"), str)
          and isinstance(head.get("names"), list) and len(head["names"]) > 0, path,
          "head must be {\"modality\": <a tower>, \"output\": <output name>, \"names\": [...]}")
    outputs = [o["name"] for o in m["modalities"][head["modality"]]["outputs"]]
    _need(head["output"] in outputs, path, f"head.output {head['output']!r} is not an output of the {head['modality']} tower {outputs}")


