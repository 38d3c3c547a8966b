"""The bundle writer: the layout and ``manifest.json`` of ``docs/bundle.md`` (format_version 1).

A bundle is assembled in a temporary sibling folder ``.<name>.tmp-<random>`` and renamed into place
only by :meth:`BundleWriter.commit`; any exception inside the ``with`` block removes the temporary
folder, so a failed export (the accuracy guard tripping, a parity failure, a crash) leaves nothing
half-written and never touches an existing bundle. ``commit`` writes ``report.json``, then the
manifest with the sha256 of **every** other file (``files``), then renames.

:func:`verify_bundle` re-reads a bundle the way a device reader must (format, version, every listed
file present with its sha256, no unlisted file, every model file referenced by a modality or variant
listed) — for tests and ``hssl export``'s final check. The device side (``edge_runtime``) has its own
reader and does not import this module.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file

FORMAT = "hssl-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.json"
TOKENIZER = "tokenizer.json"
BUNDLE_README = "README.md"
TARGETS = ("onnx", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def model_file_name(modality: str, target: str, precision: str) -> dict[str, str]:
    """File names of one tower at one precision (docs/bundle.md): ``{"model": …[, "weights": …]}``."""
    if target not in TARGETS or precision not in PRECISIONS:
        raise ValueError(f"unknown target/precision {target!r}/{precision!r}")
    if target == "tensorrt":
        return {"model": f"{modality}.{precision}.plan"}
    suffix = "" if precision == "fp32" else f".{precision}"
    if target == "openvino":
        return {"model": f"{modality}{suffix}.xml", "weights": f"{modality}{suffix}.bin"}
    return {"model": f"{modality}{suffix}.onnx"}


def labels_entry(prompts: dict[str, list[str]] | None) -> dict[str, Any] | None:
    """``{"names", "templates", "prompts"}`` from per-class prompts (``class_prompts``), or None.

    ``templates`` are the prompts that read ``template.format(name)`` for *every* class (e.g.
    ``"a picture of a {}"``); ``prompts`` keeps each class's full list (synonyms included), which a
    reader may prefer when present."""
    if not prompts:
        return None
    names = list(prompts)
    first = names[0]
    templates = []
    for p in prompts[first]:
        if first not in p:
            continue
        t = p.replace("{", "{{").replace("}", "}}").replace(first, "{}", 1)
        if all(t.format(n) in prompts[n] for n in names) and t not in templates:
            templates.append(t)
    return {"names": names, "templates": templates, "prompts": {n: list(v) for n, v in prompts.items()}}


class BundleWriter:
    """Write a bundle atomically (module docstring). Use as a context manager::

        with BundleWriter(out_dir) as w:
            path = w.path("image.onnx")   # write files here
            w.commit(manifest, report)    # hashes, manifest, rename into place
    """

    def __init__(self, out_dir: Path, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir).absolute()
        self.overwrite = overwrite
        self.tmp: Path | None = None
        self.committed = False

    def __enter__(self) -> "BundleWriter":
        if self.out_dir.exists() and not self.overwrite:
            raise FileExistsError(f"{self.out_dir} already exists; choose another --out or pass --overwrite")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise FileExistsError(f"{self.out_dir} exists and is not a folder")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def folder(self) -> Path:
        """The temporary folder being filled."""
        if self.tmp is None:
            raise RuntimeError("BundleWriter is not open (use it as a context manager)")
        return self.tmp

    def path(self, name: str) -> Path:
        if self.tmp is None:
            raise RuntimeError("BundleWriter is not open (use it as a context manager)")
        if "/" in name or name in (MANIFEST, "") or name.startswith("."):
            raise ValueError(f"invalid bundle file name {name!r}")
        return self.tmp / name

    def commit(self, manifest: dict[str, Any], report: dict[str, Any]) -> Path:
        """Write report.json and manifest.json (with every file's sha256) and rename into place."""
        if self.tmp is None:
            raise RuntimeError("BundleWriter is not open (use it as a context manager)")
        (self.tmp / REPORT).write_text(json.dumps(report, indent=1, default=_json_default))
        files = sorted(p.name for p in self.tmp.iterdir() if p.is_file() and p.name != MANIFEST)
        manifest = {**manifest, "files": {name: sha256_file(self.tmp / name) for name in files}}
        manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
        verify_bundle(self.tmp)
        old = None
        if self.out_dir.exists():
            old = self.out_dir.parent / f".{self.out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out_dir, old)
        os.replace(self.tmp, self.out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        return self.out_dir


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _tower_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    entries = list(manifest.get("modalities", {}).values())
    for per in (manifest.get("variants") or {}).values():
        entries.extend(per.values())
    return entries


def referenced_files(manifest: dict[str, Any]) -> set[str]:
    """Every file a reader opens: model files of modalities and variants (fixed-batch copies
    included), the tokenizer."""
    names: set[str] = set()
    for entry in _tower_entries(manifest):
        names.update(entry.get("files", {}).values())
        names.update(f["model"] for f in (entry.get("static") or {}).values())
    if manifest.get("tokenizer"):
        names.add(manifest["tokenizer"]["file"])
    return names


def bundle_readme(manifest: dict[str, Any]) -> str:
    """The bundle's README.md: what is inside and how to run it outside hssl (benchmark_app included)."""
    lines = [f"# hssl bundle ({manifest['target']}, default precision {manifest['precision']})", "",
             f"Towers: {', '.join(manifest['modalities'])}; each outputs an L2-normalised "
             f"(batch, {manifest['embed_dim']}) float32 embedding. The contract (inputs, preprocessing, "
             "files and their sha256) is `manifest.json`, documented in hssl's `docs/bundle.md`.", "",
             "## Run it", "", "```bash", "pip install 'hssl[runtime]'          # no torch",
             "hssl embed . --text 'a red circle'   # or --image FILE, --audio FILE", "hssl bench .", "```", "",
             "## Benchmark with OpenVINO's benchmark_app", "",
             "The graphs have a dynamic batch axis, so give benchmark_app the shape to use "
             "(`-data_shape` for ONNX / IR files with a dynamic batch; batch 1 here):", "", "```bash"]
    for m, entry in manifest["modalities"].items():
        inputs = ",".join(f"{i['name']}[{','.join('1' if d == 'batch' else str(d) for d in i['shape'])}]"
                          for i in entry["inputs"])
        lines.append(f"benchmark_app -m {entry['files']['model']} -d CPU -hint latency -data_shape \"{inputs}\""
                     + (f" -infer_precision {entry['inference_precision']}" if entry.get("inference_precision") else ""))
    lines += ["```", ""]
    static = {m: e["static"] for m, e in manifest["modalities"].items() if e.get("static")}
    if static:
        lines += ["## Fixed-shape graphs for mobile execution providers", "",
                  "NNAPI, CoreML and XNNPACK take only static shapes; these copies have the batch axis fixed "
                  "(same weights, same outputs):", ""]
        lines += [f"- {m}: " + ", ".join(f"batch {b} → `{f['model']}`" for b, f in per.items()) for m, per in static.items()]
        lines.append("")
    return "\n".join(lines)


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Check a bundle against its manifest (module docstring); returns the manifest."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{bundle_dir} is not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown format {manifest.get('format')!r} version {manifest.get('format_version')!r} "
                         f"(expected {FORMAT!r} {FORMAT_VERSION})")
    listed = manifest.get("files") or {}
    present = {p.name for p in bundle_dir.iterdir() if p.is_file() and p.name != MANIFEST}
    if missing := sorted(set(listed) - present):
        raise ValueError(f"{bundle_dir}: files listed in the manifest are missing: {', '.join(missing)}")
    if extra := sorted(present - set(listed)):
        raise ValueError(f"{bundle_dir}: files not listed in the manifest: {', '.join(extra)}")
    if unlisted := sorted(referenced_files(manifest) - set(listed)):
        raise ValueError(f"{bundle_dir}: the manifest references files it does not list: {', '.join(unlisted)}")
    for name, digest in listed.items():
        if sha256_file(bundle_dir / name) != digest:
            raise ValueError(f"{bundle_dir}: {name} was modified (sha256 mismatch)")
    return manifest
