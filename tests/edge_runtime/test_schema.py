"""The one bundle schema: what the writer's types produce the reader accepts, and docs/bundle.md
documents exactly the schema's keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_runtime.schema import (
    SCHEMA_KEYS,
    BundleError,
    Head,
    Labels,
    Manifest,
    TokenizerEntry,
    TowerEntry,
    check_manifest,
    model_file_name,
    tower_io,
)
from edge_runtime.spec import PreprocessSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "bundle.md"
SHA = "0" * 64


def full_manifest() -> Manifest:
    spec = PreprocessSpec()
    towers = {}
    for m in ("image", "text", "audio"):
        io = tower_io(m, spec, 8)
        towers[m] = TowerEntry(model_file_name(m, "openvino", "fp32"), "openvino", "fp32", inference_precision="f32",
                               inputs=io.inputs, outputs=io.outputs)
    variants = {"image": {"int8": TowerEntry(model_file_name("image", "openvino", "int8"), "openvino",
                                             inference_precision="f32")}}
    files = {name: SHA for e in [*towers.values(), *variants["image"].values()] for name in e.files.values()}
    files["tokenizer.json"] = SHA
    return Manifest(target="openvino", precision="fp32", embed_dim=8, modalities=towers, variants=variants,
                    preprocessing=spec.to_dict(), tokenizer=TokenizerEntry("tokenizer.json", spec.text.max_length),
                    labels=Labels(["circle", "square"], ["a {}"], {"circle": ["a circle"], "square": ["a square"]}),
                    head=Head("image", "embedding", ["circle", "square"]), logit_scale=14.2,
                    source={"kind": "teacher"}, created="2026-12-02T00:00:00Z", hssl_version="0.1.0", files=files)


def test_what_the_writer_types_produce_the_reader_accepts() -> None:
    d = json.loads(json.dumps(full_manifest().to_dict()))
    check_manifest(d, Path("manifest.json"))
    assert d["modalities"]["text"]["inputs"][1] == {"name": "attention_mask", "shape": ["batch", 32], "dtype": "int64"}
    assert "inputs" not in d["variants"]["image"]["int8"]  # variants share the default's signature


def test_the_reader_refuses_what_the_schema_forbids() -> None:
    d = full_manifest().to_dict()
    d["modalities"]["image"]["backend"] = "coreml"
    with pytest.raises(BundleError, match="backend must be one of"):
        check_manifest(d, Path("manifest.json"))


def documented_keys() -> set[str]:
    """Every ``"key":`` of the JSON example in docs/bundle.md, comments included."""
    text = DOC.read_text()
    block = text[text.index("```jsonc"):text.index("```", text.index("```jsonc") + 3)]
    return set(re.findall(r'"([a-z_0-9]+)"\s*:', block))


def test_docs_document_every_schema_key() -> None:
    documented = documented_keys()
    missing = {f"{cls}.{k}" for cls, keys in SCHEMA_KEYS.items() for k in keys if k not in documented}
    assert not missing, f"docs/bundle.md does not document {sorted(missing)}"


def test_docs_use_no_key_the_schema_lacks() -> None:
    schema = {k for keys in SCHEMA_KEYS.values() for k in keys}
    # keys inside opaque objects (preprocessing, source.metrics) and the example's own placeholders
    opaque = {"run_dir", "kind", "model", "step", "metrics", "circle", "square", "image", "text", "audio", "seq_sensor",
              "int8",
              "weights", "1", "8"}
    extra = documented_keys() - schema - opaque
    assert not extra, f"docs/bundle.md documents keys the schema does not define: {sorted(extra)}"
