"""WebDataset-style tar shards: round trip, exactly-once streaming over ranks × workers, damaged data."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from hybridssl.data.batching import Collator, SafeDataset, Skipped
from hybridssl.data.manifest import ManifestDataset
from hybridssl.data.open import open_dataset
from hybridssl.data.sample import BadItem, Sample
from hybridssl.data.shards import ShardDataset, ShardStream, decode_sample, encode_sample, open_shards, write_shards
from hybridssl.preprocessing import PreprocessSpec

BUILTIN = "builtin:size=14,image_size=16,audio_seconds=0.25,missing_audio=0.3,caption_dropout=0.2"


@pytest.fixture(scope="module")
def builtin():
    return open_dataset(BUILTIN)


@pytest.fixture(scope="module")
def shard_dir(builtin, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "builtin"
    write_shards(builtin, out, shard_size=3)  # 5 shards: 3, 3, 3, 3, 2
    return out


def _same(a: Sample, b: Sample, audio_atol: float) -> None:
    assert (a.uid, a.caption, a.label, a.meta) == (b.uid, b.caption, b.label, b.meta)
    for x, y in ((a.image, b.image), (a.audio, b.audio)):
        assert (x is None) == (y is None)
    if a.image is not None:
        assert b.image.dtype == np.uint8 and np.array_equal(a.image, b.image)
    if a.audio is not None:
        assert b.sample_rate == a.sample_rate and b.audio.dtype == np.float32 and b.audio.shape == a.audio.shape
        np.testing.assert_allclose(b.audio, a.audio, rtol=0, atol=audio_atol)


def test_round_trip_of_the_builtin_data(builtin, shard_dir):
    index = json.loads((shard_dir / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [3, 3, 3, 3, 2] and index["samples"] == 14
    assert index["modalities"] == list(builtin.modalities) and index["label_names"] == builtin.label_names
    ds = open_dataset(f"shards:{shard_dir}")
    assert isinstance(ds, ShardDataset) and len(ds) == len(builtin) and ds.load_report.total_skipped == 0
    for i in range(len(builtin)):
        _same(builtin[i], ds[i], audio_atol=2.0**-23)  # FLAC PCM_24
    assert list(ds.captions()) == list(builtin.captions())
    assert ds.labels() == builtin.labels()
    assert any(builtin[i].audio is None for i in range(len(builtin)))  # partial modalities survive


def test_glob_spec_selects_shards(shard_dir):
    ds = open_dataset(f"shards:{shard_dir}/shard-00000[13].tar")
    assert len(ds) == 6 and [ds.key(i) for i in (0, 3)] == ["000000003", "000000009"]
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        open_dataset(f"shards:{shard_dir}/nothing-*.tar")


def _manifest(folder: Path) -> ManifestDataset:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(folder / f"{k}.png")
        wave = (rng.uniform(-1, 1, 700 + 50 * k) * (1.5 if k == 2 else 0.9)).astype(np.float32)  # clip 2 > 1
        sf.write(folder / f"{k}.wav", wave, 8000, subtype="FLOAT")
        rows.append({"id": f"m{k}", "image": f"{k}.png", "audio": f"{k}.wav", "caption": f"clip {k}", "label": k % 2})
    rows.append({"id": "broken", "audio": "missing.wav", "caption": "gone"})
    (folder / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return ManifestDataset(folder / "m.jsonl")


@pytest.mark.parametrize("audio_format", ["flac", "wav"])
def test_round_trip_of_a_manifest_with_audio(tmp_path, audio_format):
    src = _manifest(tmp_path)
    index = write_shards(src, tmp_path / "out", shard_size=2, audio_format=audio_format)
    assert index["samples"] == 5 and index["skipped"]["skipped"] == {"missing_file": 1}
    with tarfile.open(tmp_path / "out" / "shard-000001.tar") as tar:
        names = tar.getnames()
    assert names[:4] == ["000000002.json", "000000002.png", "000000002.txt", "000000002.wav"]  # sorted, webdataset's way
    with tarfile.open(tmp_path / "out" / "shard-000001.tar") as tar:
        assert json.loads(tar.extractfile("000000002.json").read())["members"] == ["png", "txt", "wav"]
    assert ("000000002.wav" in names) and (("000000003.flac" in names) == (audio_format == "flac"))  # > 1 → wav
    ds = ShardDataset(tmp_path / "out", verify=True)
    for i in range(5):
        _same(src[i], ds[i], audio_atol=2.0**-23 if audio_format == "flac" else 0.0)


def test_features_and_errors_of_one_sample():
    feats = {"video": np.arange(12, dtype=np.float32).reshape(3, 4)}
    s = Sample("u", caption="hi", features=feats, label=2, meta={"k": [1]})
    back = decode_sample("000000000", encode_sample(s))
    assert back.caption == "hi" and back.label == 2 and back.meta == {"k": [1]}
    np.testing.assert_array_equal(back.features["video"], feats["video"])
    with pytest.raises(BadItem, match="corrupt_sample"):
        decode_sample("k", {"json": b'{"uid": "u"}', "png": b"not a png"})
    with pytest.raises(BadItem, match="no .json"):
        decode_sample("k", {"txt": b"x"})
    with pytest.raises(ValueError, match="audio_format"):
        encode_sample(s, "mp3")


def _stream_uids(stream: ShardStream, workers: int) -> list[str]:
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         multiprocessing_context="fork" if workers else None)
    return [s.uid for s in loader]


@pytest.mark.parametrize("shard_size", [3, 7])  # 5 shards ≥ 4 consumers: split by shard; 2 < 4: split by sample
def test_each_sample_once_per_epoch_over_two_ranks_and_two_workers(builtin, tmp_path, shard_size):
    write_shards(builtin, tmp_path, shard_size=shard_size)
    shards = open_shards(tmp_path)
    every = {builtin[i].uid for i in range(len(builtin))}
    per_epoch = []
    for epoch in (0, 1):
        ranks = [_stream_uids(ShardStream(shards, rank=r, world=2, seed=5, shuffle_buffer=3, start_epoch=epoch), 2)
                 for r in (0, 1)]
        seen = Counter(ranks[0] + ranks[1])
        assert set(seen) == every and max(seen.values()) == 1, seen  # exactly once across ranks × workers
        per_epoch.append(ranks)
    again = [_stream_uids(ShardStream(shards, rank=r, world=2, seed=5, shuffle_buffer=3), 2) for r in (0, 1)]
    assert again == per_epoch[0]                                  # seeded
    assert per_epoch[0] != per_epoch[1]                           # a new order every epoch
    two = _stream_uids(ShardStream(shards, seed=5, shuffle_buffer=100, epochs=2), 0)
    assert Counter(two) == Counter({u: 2 for u in every}) and two[:14] != two[14:]


def test_shuffle_buffer_is_a_permutation(builtin, shard_dir):
    plain = _stream_uids(ShardStream(shard_dir, shuffle_buffer=0), 0)
    position = {builtin[i].uid: i for i in range(len(builtin))}
    assert sorted(plain) == sorted(position)
    shard_runs = [shard for shard, _ in itertools.groupby(position[u] // 3 for u in plain)]
    assert sorted(shard_runs) == [0, 1, 2, 3, 4]                  # no buffer: whole shards, in a seeded order,
    assert all(position[a] < position[b] for a, b in zip(plain, plain[1:]) if position[a] // 3 == position[b] // 3)
    shuffled = _stream_uids(ShardStream(shard_dir, shuffle_buffer=4, seed=1), 0)
    assert sorted(shuffled) == sorted(plain) and shuffled != plain


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_and_garbage_shards_are_counted_not_fatal(shard_dir, tmp_path):
    bad = _copy(shard_dir, tmp_path / "bad")
    first = (bad / "shard-000000.tar").read_bytes()
    (bad / "shard-000000.tar").write_bytes(first[: len(first) // 2])     # cut inside the shard
    (bad / "shard-000002.tar").write_bytes(b"\x13" * 3000)              # not a tar at all
    ds = ShardDataset(bad)
    skipped = ds.load_report.skipped
    assert skipped["corrupt_shard"] == 3 and 1 <= skipped["truncated_shard"] <= 3
    assert len(ds) + ds.load_report.total_skipped == 14
    for i in range(len(ds)):
        assert ds[i].uid                                                  # what is left decodes
    items = list(ShardStream(bad, shuffle_buffer=0))
    lost = [x for x in items if isinstance(x, Skipped)]
    assert len(items) == 14 and len(lost) == ds.load_report.total_skipped
    assert {x.reason for x in lost} == {"truncated_shard"}
    with pytest.raises(ValueError, match="sha256"):
        ShardDataset(bad, verify=True)


def test_a_corrupt_member_becomes_a_counted_skip(shard_dir, tmp_path):
    bad = _copy(shard_dir, tmp_path / "member")
    path = bad / "shard-000001.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for m, data in members:
            data = b"garbage" if m.name.endswith(".png") and m.name.startswith("000000004") else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    ds = ShardDataset(bad)
    with pytest.raises(BadItem, match="corrupt_sample"):
        ds[4]
    collate = Collator(PreprocessSpec.from_dict({"image": {"size": 16, "resize": 16}}), None, ("image",))
    batch = collate([SafeDataset(ds)[i] for i in range(6)])
    assert batch["n"] == 5 and [r for _, r, _ in batch["skipped"]] == ["corrupt_sample"]
    streamed = list(ShardStream(bad, shuffle_buffer=0))
    assert [x.reason for x in streamed if isinstance(x, Skipped)] == ["corrupt_sample"]


def test_clear_errors(builtin, shard_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        open_dataset(f"shards:{tmp_path}")
    with pytest.raises(FileExistsError):
        write_shards(builtin, shard_dir)
    with pytest.raises(ValueError, match="shard_size"):
        write_shards(builtin, tmp_path / "x", shard_size=0)
    (tmp_path / "index.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an hssl shard index"):
        ShardDataset(tmp_path)
    gone = _copy(shard_dir, tmp_path / "gone")
    (gone / "shard-000003.tar").unlink()
    with pytest.raises(FileNotFoundError, match="shard-000003.tar"):
        ShardDataset(gone)
    with pytest.raises(ValueError, match="rank"):
        ShardStream(shard_dir, rank=2, world=2)
    junk = _copy(shard_dir, tmp_path / "junk")
    for f in junk.glob("*.tar"):
        f.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="no readable sample"):
        ShardDataset(junk)


def _stream_trainer(run: Path, shards: Path, steps: int):
    from hybridssl.checkpoint import latest_checkpoint
    from hybridssl.config import load_config
    from hybridssl.runs import build_model
    from hybridssl.tokenizer import TextTokenizer, train_tokenizer
    from hybridssl.trainer import Trainer

    cfg = load_config("tiny", [f"data.train=shards:{shards}", "data.streaming=true", "data.shuffle_buffer=5",
                               "train.batch_size=4", f"train.steps={steps}", "train.ckpt_every=0", "train.threads=1"])
    data = ShardDataset(shards)
    tok = TextTokenizer(train_tokenizer(data.captions(), 128), cfg.preprocess.text.max_length)
    torch.manual_seed(0)
    trainer = Trainer(cfg, run, data, tok, build_model(cfg, tok.vocab_size, data.modalities))
    if latest_checkpoint(run) is not None:
        trainer.load(latest_checkpoint(run))
    return trainer


def test_streaming_training_resumes_exactly(shard_dir, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "split").mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _stream_trainer(tmp_path / "full", shard_dir, 4).fit()
        _stream_trainer(tmp_path / "split", shard_dir, 2).fit()
        _stream_trainer(tmp_path / "split", shard_dir, 4).fit()
    finally:
        torch.set_num_threads(threads)
    full, split = ([json.loads(x)["loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
                   for r in ("full", "split"))
    assert len(full) == 4 and split == pytest.approx(full, rel=1e-5)
    with pytest.raises(ValueError, match="shards:DIR"):
        cfg_trainer = _stream_trainer(tmp_path / "full", shard_dir, 4)
        cfg_trainer.train_set = open_dataset(BUILTIN)
        cfg_trainer.loader()


def test_hssl_shard_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from cli.shard import shard

    app = typer.Typer()
    app.command()(shard)
    app.command("noop")(lambda: None)  # two commands: typer keeps the command name
    result = CliRunner().invoke(app, ["shard", "builtin:size=5,image_size=16", str(tmp_path / "o"), "--shard-size", "2",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "samples" in result.output and len(ShardDataset(tmp_path / "o")) == 5
    assert len(list((tmp_path / "o").glob("shard-*.tar"))) == 3


def _as_version_1(src: Path, dst: Path) -> Path:
    """The same shards as hssl wrote them before webdataset: json last, no member list, version 1."""
    dst.mkdir()
    index = json.loads((src / "index.json").read_text())
    for entry in index["shards"]:
        with tarfile.open(src / entry["file"]) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(dst / entry["file"], "w", format=tarfile.USTAR_FORMAT) as tar:
            order = sorted(members, key=lambda nm: (nm[0].split(".")[0], nm[0].endswith(".json")))
            for name, data in order:
                if name.endswith(".json"):
                    head = json.loads(data)
                    head.pop("members")
                    data = json.dumps(head).encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        entry["sha256"] = None
    (dst / "index.json").write_text(json.dumps({**index, "version": 1}))
    return dst


def test_version_1_shards_still_read(builtin, shard_dir, tmp_path):
    old = _as_version_1(shard_dir, tmp_path / "v1")
    ds = ShardDataset(old)
    assert len(ds) == 14 and ds.load_report.total_skipped == 0
    for i in range(14):
        _same(builtin[i], ds[i], audio_atol=2.0**-23)
    assert sorted(s.uid for s in ShardStream(old, shuffle_buffer=0)) == sorted(builtin[i].uid for i in range(14))


def test_a_tar_cut_between_a_json_and_its_media_loses_that_sample_only(builtin, shard_dir, tmp_path):
    bad = _copy(shard_dir, tmp_path / "cut")
    path = bad / "shard-000000.tar"
    with tarfile.open(path) as tar:
        png = tar.getmember("000000001.png")                            # after 000000001.json (sorted)
    path.write_bytes(path.read_bytes()[: png.offset])                    # the json is in, its media are not
    ds = ShardDataset(bad)
    assert [ds.key(i) for i in range(len(ds))][:1] == ["000000000"] and "000000001" not in {
        ds.key(i) for i in range(len(ds))}
    assert ds.load_report.skipped == Counter({"truncated_shard": 2}) and len(ds) == 12
    items = list(ShardStream(bad, shuffle_buffer=0))
    lost = [x for x in items if isinstance(x, Skipped)]
    assert len(items) == 14 and [x.reason for x in lost] == ["truncated_shard"] * 2
    assert "missing (the tar was cut)" in lost[0].detail or lost[0].uid.startswith("shard-000000.tar#")


def test_resampled_streams_draw_shards_with_replacement_reproducibly(builtin, shard_dir):
    def first(rank: int, n: int = 40) -> list[str]:
        stream = ShardStream(shard_dir, rank=rank, world=2, seed=3, shuffle_buffer=4, resampled=True)
        return [s.uid for s in itertools.islice(stream, n)]

    a = first(0)
    assert a == first(0) and a != first(1)                              # seeded per consumer
    counts = Counter(a)
    assert max(counts.values()) > 1 and len(counts) > 5                 # with replacement, across shards


def test_plain_webdataset_reads_the_shards(builtin, shard_dir):
    """The shards are ordinary WebDataset tars: webdataset's own reader, no hssl code, gets every sample."""
    import webdataset as wds

    urls = sorted(str(p) for p in shard_dir.glob("shard-*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(samples) == 14 and samples[0]["__key__"] == "000000000"
    for i, s in enumerate(samples):
        assert s["json"]["uid"] == builtin[i].uid and s.get("txt") == builtin[i].caption
        assert s["png"].shape[:2] == (16, 16) and sorted(s["json"]["members"]) == sorted(
            k for k in s if not k.startswith("__") and k != "json")
