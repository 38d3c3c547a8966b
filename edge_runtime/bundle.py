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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.modalities import ordered_modalities
from edge_runtime.schema import LIMITS, MAX_MANIFEST_BYTES, BundleError, check_manifest, safe_file_name

CHUNK = 1 << 20


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
        return ordered_modalities(self.manifest["modalities"])

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
        unlisted = sorted(r for r in refs if not safe_file_name(r) or r not in manifest["files"])
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
