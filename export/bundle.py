"""The bundle writer: the layout and ``manifest.json`` of ``docs/bundle.md`` (format_version 1).

A bundle is assembled in a temporary sibling folder ``.<name>.tmp-<random>`` and renamed into place
only by :meth:`BundleWriter.commit`; any exception inside the ``with`` block removes the temporary
folder, so a failed export (the accuracy guard tripping, a parity failure, a crash) leaves nothing
half-written and never touches an existing bundle. ``commit`` writes ``report.json``, then the
manifest with the sha256 of **every** other file (``files``), then renames.

:func:`verify_bundle` re-reads a bundle with the device side's own reader
(:func:`edge_runtime.bundle.read_bundle`: schema, every listed file present with its sha256, every
referenced file listed) and also refuses files the manifest does not list — ``hssl export``'s final
check, so the writer can never commit a bundle the runtime would refuse. The manifest's types and
rules are :mod:`edge_runtime.schema`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_runtime.bundle import read_bundle, sha256_file
from edge_runtime.schema import MANIFEST_FILE, REPORT_FILE, BundleError, Labels, Manifest
from hybridssl.jsonsafe import json_safe


def labels_entry(prompts: dict[str, list[str]] | None) -> Labels | None:
    """The manifest's labels from per-class prompts (``class_prompts``), or None.

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
    return Labels(names, templates, {n: list(v) for n, v in prompts.items()})


class BundleWriter:
    """Write a bundle atomically (module docstring). Use as a context manager::

        with BundleWriter(out_dir) as w:
            path = w.path("image.onnx")   # write files here
            w.commit(manifest, report)    # a schema.Manifest: hashes, manifest, rename into place
    """

    def __init__(self, out_dir: Path, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir).absolute()
        self.overwrite = overwrite
        self.tmp: Path | None = None

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
        if "/" in name or name in (MANIFEST_FILE, "") or name.startswith("."):
            raise ValueError(f"invalid bundle file name {name!r}")
        return self.tmp / name

    def commit(self, manifest: Manifest, report: dict[str, Any]) -> Path:
        """Write report.json and manifest.json (with every file's sha256), verify the bundle with the
        device reader and rename it into place."""
        if self.tmp is None:
            raise RuntimeError("BundleWriter is not open (use it as a context manager)")
        (self.tmp / REPORT_FILE).write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
        files = sorted(p.name for p in self.tmp.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
        manifest = replace(manifest, files={name: sha256_file(self.tmp / name) for name in files},
                           created=manifest.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (self.tmp / MANIFEST_FILE).write_text(json.dumps(json_safe(manifest.to_dict()), indent=1, allow_nan=False))
        verify_bundle(self.tmp)
        old = None
        if self.out_dir.exists():
            old = self.out_dir.parent / f".{self.out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out_dir, old)
        os.replace(self.tmp, self.out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out_dir


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
    for entry in manifest["modalities"].values():
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
    """Check a bundle as the device reader does, and that it holds no file the manifest does not
    list (module docstring); returns the manifest."""
    bundle = read_bundle(bundle_dir, verify=True)
    present = {p.name for p in Path(bundle_dir).iterdir() if p.is_file() and p.name != MANIFEST_FILE}
    if extra := sorted(present - set(bundle.manifest["files"])):
        raise BundleError(f"{bundle_dir}: files not listed in the manifest: {', '.join(extra)}")
    return bundle.manifest
