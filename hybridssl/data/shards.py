"""WebDataset-style tar shards: write any :class:`MultimodalDataset` into tar files of N samples,
read them back by random access (:class:`ShardDataset`, a map-style dataset — the ``shards:`` spec)
or as a stream (:class:`ShardStream`, an ``IterableDataset`` split over ranks and DataLoader workers
with a seeded shuffle buffer).

Layout of a shard folder (written by :func:`write_shards`, ``hssl shard``)::

    shard-000000.tar … shard-NNNNNN.tar   ``shard_size`` samples each (the last one fewer)
    index.json                            format, version, dataset name, modalities, label_names,
                                          feature_dims, audio_format, samples, and per shard
                                          {file, count, bytes, sha256}; the write-time skip report

Inside a tar, the members of one sample are consecutive and share a key ``K`` (the sample's
position in the source dataset, 9 digits — no dot, as WebDataset splits ``K.ext`` at the first dot).
``K.json`` comes LAST and closes the sample, so a tar cut anywhere never yields half a sample:

    K.png    image (H, W, 3) uint8, PNG (lossless)
    K.txt    caption, UTF-8
    K.flac   audio (T,) mono, FLAC PCM_24 (|error| ≤ 2⁻²³); a clip beyond [−1, 1] is stored as
    K.wav      WAV float32 instead (lossless); ``audio_format="wav"`` stores every clip that way
    K.npz    precomputed features {name: (T, D) float32} (``np.savez``; read with allow_pickle=False)
    K.json   {"uid", "label", "sample_rate", "meta"}   always (meta JSON-encoded; non-JSON values → str)

Exactly once per epoch (:class:`ShardStream`): the consumers are the ``world × num_workers``
(rank, worker) pairs, consumer ``c = rank·num_workers + worker``. With at least as many shards as
consumers, epoch e deals the shards of the seeded permutation ``default_rng([seed, e])`` round-robin
(``dist.partition``); otherwise every consumer reads every shard (in that order) and keeps the
samples whose running position p satisfies ``p mod consumers == c`` (decoding only those). Either
way every sample goes to exactly one consumer. Each consumer shuffles with a buffer of
``shuffle_buffer`` samples and the generator ``default_rng([seed, e, c])``: fill the buffer, then
for each new sample emit a uniformly chosen buffered one and put the new one in its place; at the
end emit the rest in a random order — a permutation of the consumer's samples, different per epoch.
The buffer holds the raw member bytes; a sample is decoded only when it leaves the buffer, so
``skip_batches`` (resuming a run: the batches this consumer already delivered under a DataLoader
with ``batch_size``, whose workers deliver batches round-robin) costs reading, not decoding.

Damaged data never crashes a reader: a member that does not decode makes its sample a
:class:`~hybridssl.data.sample.BadItem` (``corrupt_sample``); a truncated or unreadable tar loses
the samples it cannot deliver, counted as ``truncated_shard`` / ``corrupt_shard`` — in
``load_report`` at open time (map-style) or as skipped records in the stream (which the collator
counts). A shard listed in the index but absent is a FileNotFoundError; with ``verify=True`` a
sha256 mismatch is a ValueError naming the shard.
"""

from __future__ import annotations

import glob
import io
import itertools
import json
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from edge_runtime.bundle import sha256_file

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.batching import Skipped
from hybridssl.data.sample import BadItem, Sample, SkipReport
from hybridssl.dist import partition

FORMAT = "hssl-shards"
VERSION = 1
INDEX = "index.json"
AUDIO_FORMATS = ("flac", "wav")
EXTENSIONS = ("png", "txt", "flac", "wav", "npz", "json")  # member order in a tar: json closes a sample

__all__ = ["ShardDataset", "ShardSet", "ShardStream", "decode_sample", "encode_sample", "open_shards", "write_shards"]


# ------------------------------------------------------------------------------ encoding
def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _audio(wave: np.ndarray, rate: int, audio_format: str) -> tuple[str, bytes]:
    """(extension, bytes): FLAC PCM_24 when the clip fits [−1, 1] and FLAC is asked for, else WAV float."""
    wave = np.asarray(wave, dtype=np.float32)
    buf = io.BytesIO()
    if audio_format == "flac" and wave.size and float(np.abs(wave).max()) <= 1.0:
        sf.write(buf, wave, rate, format="FLAC", subtype="PCM_24")
        return "flac", buf.getvalue()
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return "wav", buf.getvalue()


def _npz(features: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in features.items()})
    return buf.getvalue()


def encode_sample(sample: Sample, audio_format: str = "flac") -> dict[str, bytes]:
    """The tar members of one sample: ``{extension: bytes}`` (json always; png/txt/flac|wav/npz if present)."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    head = {"uid": sample.uid, "label": sample.label, "sample_rate": sample.sample_rate, "meta": sample.meta}
    out = {"json": json.dumps(head, default=str).encode()}
    if sample.image is not None:
        out["png"] = _png(sample.image)
    if sample.caption is not None:
        out["txt"] = sample.caption.encode("utf-8")
    if sample.audio is not None:
        if sample.sample_rate is None:
            raise ValueError(f"{sample.uid}: audio without a sample rate")
        ext, data = _audio(sample.audio, sample.sample_rate, audio_format)
        out[ext] = data
    if sample.features:
        out["npz"] = _npz(sample.features)
    return out


def decode_sample(key: str, members: dict[str, bytes]) -> Sample:
    """Members ``{extension: bytes}`` of key ``key`` → :class:`Sample`; BadItem ``corrupt_sample`` if any fails."""
    if "json" not in members:
        raise BadItem(key, "corrupt_sample", "no .json member")
    try:
        head = json.loads(members["json"].decode("utf-8"))
        uid = str(head["uid"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadItem(key, "corrupt_sample", f"bad .json member: {e}") from None
    try:
        return _decode_media(uid, head, members)
    except Exception as e:  # PIL, libsndfile, zip, unicode errors: the sample is unusable, the run goes on
        raise BadItem(uid, "corrupt_sample", f"{type(e).__name__}: {e}") from None


def _decode_media(uid: str, head: dict[str, Any], members: dict[str, bytes]) -> Sample:
    image = audio = features = None
    rate = head.get("sample_rate")
    if "png" in members:
        with Image.open(io.BytesIO(members["png"])) as img:
            image = np.asarray(img.convert("RGB"), dtype=np.uint8)   # (H, W, 3)
    for ext in ("flac", "wav"):
        if ext in members:
            data, rate = sf.read(io.BytesIO(members[ext]), dtype="float32", always_2d=True)  # (T, C)
            audio = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])  # (T,)
    if "npz" in members:
        with np.load(io.BytesIO(members["npz"]), allow_pickle=False) as z:
            features = {k: z[k] for k in z.files}
    caption = members["txt"].decode("utf-8") if "txt" in members else None
    label = head.get("label")
    return Sample(uid=uid, image=image, caption=caption, audio=audio, sample_rate=int(rate) if audio is not None else None,
                  features=features, label=None if label is None else int(label), meta=dict(head.get("meta") or {}))


# ------------------------------------------------------------------------------ writing
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed metadata: identical input → identical tar
    tar.addfile(info, io.BytesIO(data))


class _ShardWriter:
    """Writes ``shard-{i:06d}.tar`` files of ``shard_size`` samples (each under a temporary name first)."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir, self.shard_size = out_dir, shard_size
        self.shards: list[dict[str, Any]] = []
        self.tar: tarfile.TarFile | None = None
        self.count = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        if self.tar is None:
            self.tar = tarfile.open(self._tmp(len(self.shards)), "w", format=tarfile.USTAR_FORMAT)
        for ext in EXTENSIONS:  # fixed member order, json last
            if ext in members:
                _add(self.tar, f"{key}.{ext}", members[ext])
        self.count += 1
        if self.count == self.shard_size:
            self.close()

    def _tmp(self, i: int) -> Path:
        return self.out_dir / f".shard-{i:06d}.tar.tmp"

    def close(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        i = len(self.shards)
        final = self.out_dir / f"shard-{i:06d}.tar"
        os.replace(self._tmp(i), final)
        self.shards.append({"file": final.name, "count": self.count, "bytes": final.stat().st_size,
                            "sha256": sha256_file(final)})
        self.tar, self.count = None, 0


def write_shards(dataset: MultimodalDataset, out_dir: str | Path, shard_size: int = 1000, audio_format: str = "flac",
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write every usable sample of ``dataset`` into tar shards under ``out_dir``; returns the index.

    Samples that raise BadItem are skipped and counted in the index's ``skipped`` report.
    ``progress(i)`` is called after each source item. ``out_dir`` must not already hold an index.
    """
    if int(shard_size) != shard_size or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: the dataset is empty, nothing to shard")
    out = Path(out_dir)
    if (out / INDEX).exists():
        raise FileExistsError(f"{out} already holds shards ({INDEX}); choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    report.merge(dataset.load_report)
    writer = _ShardWriter(out, int(shard_size))
    written = 0
    for i in range(len(dataset)):
        sample = dataset.try_get(i, report)
        if sample is not None:
            writer.add(f"{i:09d}", encode_sample(sample, audio_format))
            written += 1
        if progress:
            progress(i + 1)
    writer.close()
    if not written:
        raise ValueError(f"{dataset.name}: no sample could be read ({report.to_dict()['skipped']})")
    index = {"format": FORMAT, "version": VERSION, "name": dataset.name, "modalities": list(dataset.modalities),
             "label_names": dataset.label_names, "feature_dims": dict(getattr(dataset, "feature_dims", {}) or {}),
             "audio_format": audio_format, "shard_size": int(shard_size), "samples": written,
             "shards": writer.shards, "skipped": report.to_dict()}
    tmp = out / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX)
    return index


# ------------------------------------------------------------------------------ the shard set
@dataclass
class ShardSet:
    """The index of a shard folder and the shard files a spec selected (in index order)."""

    root: Path
    index: dict[str, Any]
    files: list[Path]
    counts: list[int]

    @property
    def samples(self) -> int:
        return sum(self.counts)


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable shard index: {e}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("shards"), list):
        raise ValueError(f"{path} is not an hssl shard index (format {FORMAT!r}); write shards with `hssl shard`")
    if index.get("version", 0) > VERSION:
        raise ValueError(f"{path} has shard format version {index.get('version')}; this hssl reads up to {VERSION}")
    return index


def open_shards(spec: str | Path, verify: bool = False) -> ShardSet:
    """``DIR`` (with index.json), ``DIR/index.json`` or a glob of ``.tar`` files next to their index.json."""
    text = str(spec)
    if not text:
        raise ValueError("empty shards spec: give a folder written by `hssl shard` or a glob of its .tar files")
    path = Path(text).expanduser()
    if glob.has_magic(text):
        matched = sorted(Path(p).resolve() for p in glob.glob(str(path)))
        if not matched:
            raise FileNotFoundError(f"no shard matches {text}")
        root = matched[0].parent
        wanted = {p.name for p in matched}
    else:
        root = path.parent if path.name == INDEX else path
        wanted = None
    if not (root / INDEX).is_file():
        raise FileNotFoundError(f"no {INDEX} in {root}: write shards with `hssl shard DATA_SPEC {root}`")
    index = _read_index(root / INDEX)
    entries = [e for e in index["shards"] if wanted is None or e["file"] in wanted]
    if wanted is not None and len(entries) != len(wanted):
        unknown = sorted(wanted - {e["file"] for e in entries})
        raise ValueError(f"{unknown[:3]} matched {text} but are not listed in {root / INDEX}")
    files = [root / e["file"] for e in entries]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"shard(s) {', '.join(missing[:5])} listed in {root / INDEX} are missing")
    if verify:
        for e, f in zip(entries, files):
            if sha256_file(f) != e["sha256"]:
                raise ValueError(f"shard {f} does not match the sha256 in {INDEX} (corrupt or replaced)")
    return ShardSet(root, index, files, [int(e["count"]) for e in entries])


# ------------------------------------------------------------------------------ reading tars
def _split(name: str) -> tuple[str, str]:
    key, _, ext = name.partition(".")
    return key, ext


def scan_tar(path: Path) -> tuple[list[tuple[str, dict[str, tuple[int, int]]]], str | None]:
    """Random-access table of one tar: [(key, {ext: (data offset, size)})] of its COMPLETE samples
    (all members inside the file), and the error that stopped the scan early (None if none)."""
    size = path.stat().st_size
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    error = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    error = f"member {info.name} runs past the end of the file"
                    break
                key, ext = _split(info.name)
                samples.setdefault(key, {})[ext] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        error = f"{type(e).__name__}: {e}"
    return [(k, m) for k, m in samples.items() if "json" in m], error


def _iter_tar(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream the complete samples of a tar in order: (key, {ext: bytes}), each closed by its json
    member; members left without their json (a cut tar) are dropped. A read error propagates."""
    with tarfile.open(path, "r|") as tar:
        key, members = None, {}
        for info in tar:
            if not info.isfile():
                continue
            k, ext = _split(info.name)
            if k != key:
                key, members = k, {}
            f = tar.extractfile(info)
            members[ext] = f.read() if f is not None else b""
            if len(members[ext]) != info.size:
                raise EOFError(f"member {info.name} is truncated")
            if ext == "json":
                yield key, members
                key, members = None, {}


# ------------------------------------------------------------------------------ map-style reader
@dataclass(frozen=True)
class _Record:
    shard: int
    key: str
    members: dict[str, tuple[int, int]]


class ShardDataset(MultimodalDataset):
    """Random access to the samples of a shard folder (``shards:`` spec).

    The tars are scanned once at open time (headers only); samples a damaged shard cannot deliver
    are counted in ``load_report`` (``truncated_shard`` / ``corrupt_shard``) and left out.
    """

    def __init__(self, spec: str | Path, verify: bool = False) -> None:
        super().__init__()
        self.shard_set = open_shards(spec, verify)
        index = self.shard_set.index
        self.name = str(index.get("name") or "shards")
        self.modalities = tuple(index.get("modalities") or ())
        self.label_names = index.get("label_names")
        self.feature_dims = dict(index.get("feature_dims") or {})
        self._records: list[_Record] = []
        for s, (path, count) in enumerate(zip(self.shard_set.files, self.shard_set.counts)):
            table, error = scan_tar(path)
            self._records += [_Record(s, k, m) for k, m in table]
            if len(table) < count:
                reason = "truncated_shard" if table or error is None else "corrupt_shard"
                for k in range(count - len(table)):
                    self.load_report.skip(f"{path.name}#{len(table) + k}", reason, error or "fewer samples than indexed")
        if not self._records:
            raise ValueError(f"no readable sample in the shards of {self.shard_set.root} "
                             f"({self.load_report.to_dict()['skipped']})")

    def __len__(self) -> int:
        return len(self._records)

    def key(self, i: int) -> str:
        return self._records[self._check_index(i)].key

    def _read(self, rec: _Record, exts: Sequence[str] | None = None) -> dict[str, bytes]:
        out = {}
        with self.shard_set.files[rec.shard].open("rb") as f:
            for ext, (offset, size) in rec.members.items():
                if exts is None or ext in exts:
                    f.seek(offset)
                    out[ext] = f.read(size)
        return out

    def __getitem__(self, i: int) -> Sample:
        rec = self._records[self._check_index(i)]
        try:
            members = self._read(rec)
        except OSError as e:
            raise BadItem(rec.key, "corrupt_sample", f"{type(e).__name__}: {e}") from None
        return decode_sample(rec.key, members)

    def caption_at(self, i: int) -> str | None:
        rec = self._records[self._check_index(i)]
        try:
            raw = self._read(rec, ("txt",)).get("txt")
            return raw.decode("utf-8") if raw is not None else None
        except (OSError, UnicodeDecodeError):
            return None

    def label_at(self, i: int) -> int | None:
        rec = self._records[self._check_index(i)]
        try:
            label = json.loads(self._read(rec, ("json",))["json"]).get("label")
        except (OSError, ValueError, KeyError):
            return None
        return None if label is None else int(label)

    def stream(self, **kwargs: Any) -> "ShardStream":
        """A :class:`ShardStream` over the same shards (keyword arguments of ShardStream)."""
        return ShardStream(self.shard_set, **kwargs)


# ------------------------------------------------------------------------------ streaming reader
class ShardStream(IterableDataset):
    """Sequential reader of a shard set for one rank: yields :class:`Sample` (or ``Skipped`` records
    for damaged data), each sample exactly once per epoch over all ranks and workers (module doc).

    ``epochs=None`` streams forever (epoch 0, 1, …); ``start_epoch`` is where to begin. ``keys``
    restricts the stream to those samples (e.g. a train split); ``skip_batches`` / ``batch_size``: see
    the module doc.
    """

    def __init__(self, shards: ShardSet | str | Path, *, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle_buffer: int = 1000, epochs: int | None = 1, start_epoch: int = 0,
                 keys: set[str] | None = None, skip_batches: int = 0, batch_size: int = 1) -> None:
        super().__init__()
        self.shards = shards if isinstance(shards, ShardSet) else open_shards(shards)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, world size {world})")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
        self.rank, self.world, self.seed = rank, world, seed
        self.shuffle_buffer, self.epochs, self.start_epoch = shuffle_buffer, epochs, start_epoch
        self.keys = keys
        if skip_batches < 0 or batch_size < 1:
            raise ValueError(f"need skip_batches >= 0 and batch_size >= 1, got {skip_batches} and {batch_size}")
        self.skip_batches, self.batch_size = skip_batches, batch_size

    def consumer(self) -> tuple[int, int, int, int]:
        """(consumer id, number of consumers, worker, workers); consumer = rank·workers + worker."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * workers + worker, self.world * workers, worker, workers

    def __iter__(self) -> Iterator[Sample | Skipped]:
        c, n, worker, workers = self.consumer()
        done = max(0, self.skip_batches - worker + workers - 1) // workers  # batches this worker already gave
        raw = itertools.islice(self._epochs(c, n), done * self.batch_size, None)
        for item in raw:
            yield item if isinstance(item, Skipped) else _decoded(*item)

    def _epochs(self, consumer: int, consumers: int) -> Iterator[tuple[str, dict[str, bytes]] | Skipped]:
        epoch = self.start_epoch
        while self.epochs is None or epoch < self.start_epoch + self.epochs:
            rng = np.random.default_rng([self.seed, epoch, consumer])
            yield from _shuffled(self._raw(epoch, consumer, consumers), self.shuffle_buffer, rng)
            epoch += 1

    def _raw(self, epoch: int, consumer: int, consumers: int) -> Iterator[tuple[str, dict[str, bytes]] | Skipped]:
        order = partition(list(range(len(self.shards.files))), 0, 1, self.seed, epoch)  # seeded shard order
        by_shard = len(order) >= consumers
        mine = partition(order, consumer, consumers) if by_shard else order
        position = 0
        for s in mine:
            path = self.shards.files[s]
            delivered, error = 0, "the tar ends early"
            try:
                for key, members in _iter_tar(path):
                    delivered += 1
                    if self.keys is not None and key not in self.keys:
                        continue
                    take = by_shard or position % consumers == consumer
                    position += 1
                    if take:
                        yield key, members
            except (tarfile.TarError, OSError, EOFError) as e:
                error = f"{type(e).__name__}: {e}"
            lost = range(position, position + max(0, self.shards.counts[s] - delivered))  # lost samples' positions
            for p in lost:
                if by_shard or p % consumers == consumer:
                    yield Skipped(f"{path.name}#{delivered + p - lost.start}", "truncated_shard", error)
            position = lost.stop


def _decoded(key: str, members: dict[str, bytes]) -> Sample | Skipped:
    try:
        return decode_sample(key, members)
    except BadItem as e:
        return Skipped(e.uid, e.reason, e.detail)


def _shuffled(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Buffered shuffle (module doc): a permutation of ``items`` using ``size`` slots."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    for j in rng.permutation(len(buf)).tolist():
        yield buf[j]
