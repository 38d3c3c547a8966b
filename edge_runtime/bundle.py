"""Reading and verifying a bundle (the contract is ``docs/bundle.md``).

A bundle is a folder with ``manifest.json`` and the files it lists in ``files`` with their sha256.
:func:`read_bundle` refuses, with a :class:`BundleError` naming the file:

- a missing or unparsable ``manifest.json``, a ``format`` other than ``"hssl-bundle"``, a
  ``format_version`` not in :data:`SUPPORTED_VERSIONS`, a malformed field (modalities, inputs,
  outputs, files, tokenizer, labels, head, variants);
- a file that is referenced (model/weights files, tokenizer) but not listed in ``files``;
- a listed file that is missing, not a regular file, outside the bundle folder, or whose sha256
  (read in 1 MiB chunks) differs from the manifest;
- an ONNX graph that reads external data from a file the manifest does not list (the back ends
  would open it unverified; :mod:`edge_runtime.onnx_refs`);
- values beyond the bounds of :data:`LIMITS` (a ``max_length`` of 10⁹, a 10⁶-pixel input side, a
  manifest nested 100 000 deep), which would otherwise abort the process in the tokenizer or exhaust
  memory during warm-up; input dtypes other than :data:`INPUT_DTYPES` of the modality.

Files present in the folder but not listed are ignored (they are never read).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edge_runtime.openvino_core import INFERENCE_PRECISIONS

FORMAT = "hssl-bundle"
SUPPORTED_VERSIONS = (1,)
MODALITIES = ("image", "text", "audio")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")
DTYPES = ("float32", "float16", "int64", "int32")
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 4 << 20
#: Bounds a manifest must respect (docs/bundle.md, "Bounds").
LIMITS = {"max_length": 4096, "image_size": 1024, "image_resize": 4096, "clip_seconds": 60.0, "n_mels": 512,
          "dim": 65536, "elements": 1 << 28, "depth": 32}
#: The dtype of every input of each modality's graph.
INPUT_DTYPES = {"image": ("float32",), "audio": ("float32",), "text": ("int64",)}


class BundleError(ValueError):
    """A bundle that is missing, malformed, incomplete or tampered with."""


@dataclass(frozen=True)
class TowerFiles:
    """One model of one modality at one precision: its files (key → absolute path) and back end."""

    modality: str
    precision: str
    files: dict[str, Path]       # "model" → .onnx/.xml/.plan, "weights" → .bin (OpenVINO)
    backend: str | None          # the back end the exporter targeted (a hint for backend="auto")
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    inference_precision: str | None = None  # OpenVINO's INFERENCE_PRECISION_HINT (None: f32)

    @property
    def model(self) -> Path:
        return self.files["model"]


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    fingerprint: str             # sha256 of manifest.json: identifies the bundle (e.g. for galleries)

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.manifest["modalities"])

    def precisions(self, modality: str) -> list[str]:
        """Every precision the bundle ships for ``modality``, its default first."""
        default = self.manifest["modalities"][modality].get("precision", self.manifest["precision"])
        others = [p for p in (self.manifest.get("variants") or {}).get(modality, {}) if p != default]
        return [default, *others]

    def tower(self, modality: str, precision: str | None = None) -> TowerFiles:
        """The files of ``modality`` at ``precision`` (None = the bundle's default for it)."""
        if modality not in self.manifest["modalities"]:
            raise BundleError(f"{self.root}: the bundle has no {modality} tower (it has {', '.join(self.modalities)})")
        entry = self.manifest["modalities"][modality]
        default = entry.get("precision", self.manifest["precision"])
        if precision is not None and precision != default:
            variants = (self.manifest.get("variants") or {}).get(modality, {})
            if precision not in variants:
                raise BundleError(f"{self.root}: no {precision} model of the {modality} tower "
                                  f"(available: {', '.join(self.precisions(modality))})")
            entry = {**entry, **variants[precision], "precision": precision}
        return TowerFiles(modality, entry.get("precision", default),
                          {k: self.root / v for k, v in entry["files"].items()},
                          entry.get("backend"), list(entry["inputs"]), list(entry["outputs"]),
                          entry.get("inference_precision"))

    @property
    def tokenizer_path(self) -> Path | None:
        tok = self.manifest.get("tokenizer")
        return self.root / tok["file"] if tok else None

    @property
    def max_length(self) -> int | None:
        tok = self.manifest.get("tokenizer")
        return int(tok["max_length"]) if tok else None


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Parse and check ``bundle_dir/manifest.json``; with ``verify`` also every file's sha256."""
    root = Path(bundle_dir)
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle folder (no such directory)")
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle: manifest.json is missing")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {path.stat().st_size} bytes is too large for a manifest (at most {MAX_MANIFEST_BYTES})")
    raw = path.read_bytes()
    _check_depth(raw, path)
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as e:
        raise BundleError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    check_manifest(manifest, path)
    if verify:
        verify_files(root, manifest)
        check_external_data(root, manifest)
    return Bundle(root, manifest, hashlib.sha256(raw).hexdigest())


def _check_depth(raw: bytes, path: Path) -> None:
    """Refuse JSON nested deeper than ``LIMITS["depth"]`` before parsing it (no RecursionError).
    Brackets inside strings are skipped; escaped quotes do not end a string."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:      # backslash
                escaped = True
            elif byte == 0x22:      # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > LIMITS["depth"]:
                raise BundleError(f"{path}: nested deeper than {LIMITS['depth']} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a manifest")


# ----------------------------------------------------------------------------- manifest checks


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
        _need(_safe_name(name), path, f"files lists {name!r}, which is not a plain relative path inside the bundle")
        _need(len(digest) == 64 and all(c in "0123456789abcdef" for c in digest), path, f"files[{name!r}] is not a sha256 hex digest")
    mods = m.get("modalities")
    _need(isinstance(mods, dict) and len(mods) > 0, path, "modalities must be a non-empty object")
    for name, entry in mods.items():
        _need(name in MODALITIES, path, f"unknown modality {name!r} (valid: {', '.join(MODALITIES)})")
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


def _safe_name(name: str) -> bool:
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
        _need(spec["dtype"] in INPUT_DTYPES.get(modality, DTYPES), path,
              f"{where}.inputs.{spec['name']}: dtype {spec['dtype']} (the {modality} tower takes "
              f"{' / '.join(INPUT_DTYPES.get(modality, DTYPES))})")
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


# ----------------------------------------------------------------------------- file checks


def check_external_data(root: Path, manifest: Mapping[str, Any]) -> None:
    """Every external-data file an ONNX graph of the bundle reads is a listed (hence verified) file."""
    from edge_runtime.onnx_refs import OnnxParseError, external_data_files

    for name in manifest["files"]:
        if not name.endswith(".onnx"):
            continue
        try:
            refs = external_data_files(root / name)
        except OnnxParseError as e:
            raise BundleError(f"{root}: {name} is not a valid ONNX graph ({e})") from None
        unlisted = sorted(r for r in refs if not _safe_name(r) or r not in manifest["files"])
        if unlisted:
            raise BundleError(f"{root}: {name} reads external data from {', '.join(unlisted)}, which the manifest "
                              "does not list (every file a graph reads must be listed with its sha256)")


def verify_files(root: Path, manifest: Mapping[str, Any]) -> None:
    """Every listed file exists inside ``root`` and matches its sha256."""
    resolved_root = root.resolve()
    for name, digest in manifest["files"].items():
        p = root / name
        if not p.is_file():
            raise BundleError(f"{root}: {name} is listed in the manifest but missing")
        if resolved_root not in p.resolve().parents:
            raise BundleError(f"{root}: {name} resolves outside the bundle folder")
        actual = sha256_file(p)
        if actual != digest:
            raise BundleError(f"{root}: {name} was modified (sha256 {actual[:12]}… ≠ manifest {digest[:12]}…)")
