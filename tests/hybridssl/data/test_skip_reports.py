"""Skips reach the run's report: rows dropped while indexing survive the train/val split, a damaged
shard is counted, an item drawn many times counts once, paths outside the manifest's folder are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hybridssl.config import DataConfig
from hybridssl.data.manifest import ManifestDataset
from hybridssl.data.open import open_dataset
from hybridssl.data.sample import SkipReport
from hybridssl.data.shards import write_shards
from hybridssl.data.splits import build_datasets


def _manifest(folder: Path, extra_lines: list[str]) -> Path:
    for k in range(8):
        Image.fromarray(np.full((8, 8, 3), 30 * k, np.uint8)).save(folder / f"{k}.png")
    lines = [json.dumps({"image": f"{k}.png", "caption": f"item {k}"}) for k in range(8)] + extra_lines
    (folder / "m.jsonl").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not utf-8\n")
    return folder / "m.jsonl"


def test_index_time_skips_survive_the_seeded_split(tmp_path):
    path = _manifest(tmp_path, ["{not json", '{"image": 5}', '{"caption": 5}', '{"label": "x"}'])
    train, val = build_datasets(DataConfig(train=f"manifest:{path}"), seed=0)
    for part in (train, val):  # malformed JSON, a wrong type, a non-UTF-8 line; a non-string caption; nothing
        assert dict(part.load_report.skipped) == {"malformed_row": 3, "bad_caption": 1, "no_modality": 1}


def test_a_truncated_shard_reaches_the_report(tmp_path):
    write_shards(open_dataset("builtin:size=9,image_size=16,audio_seconds=0.25"), tmp_path / "s", shard_size=3)
    first = tmp_path / "s" / "shard-000000.tar"
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    train, _ = build_datasets(DataConfig(train=f"shards:{tmp_path / 's'}"), seed=0)
    assert train.load_report.skipped["truncated_shard"] >= 1


def test_an_item_drawn_three_times_counts_once():
    report = SkipReport()
    for _ in range(3):
        report.skip_drawn("row-7", "unreadable_image", "truncated PNG")
    report.skip_drawn("row-8", "unreadable_image")
    assert report.skipped["unreadable_image"] == 2 and report.draws["unreadable_image"] == 4
    restored = SkipReport.from_state(json.loads(json.dumps(report.state_dict())))
    restored.skip_drawn("row-7", "unreadable_image")          # after a resume: still the same item
    assert restored.skipped["unreadable_image"] == 2 and restored.draws["unreadable_image"] == 5
    merged = SkipReport()
    merged.merge(report)
    merged.merge(restored)
    assert merged.skipped["unreadable_image"] == 2


def test_paths_outside_the_manifest_folder_are_not_opened(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(secret)
    (data / "link.png").symlink_to(secret)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(data / "ok.png")
    rows = [{"image": "ok.png"}, {"image": "/etc/passwd"}, {"image": "../secret.png"}, {"image": "link.png"},
            {"image": str(data / "ok.png")}]
    (data / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = ManifestDataset(data / "m.jsonl")
    assert len(ds) == 2 and ds.load_report.skipped["outside_root"] == 3
    assert "--allow-outside-paths" in ds.load_report.examples["outside_root"][0]
    assert len(ManifestDataset(data / "m.jsonl", allow_outside_paths=True)) == 5
    cfg = DataConfig(train=f"manifest:{data / 'm.jsonl'}", allow_outside_paths=True)
    train, val = build_datasets(cfg, seed=0)
    assert len(train) + len(val) == 5
