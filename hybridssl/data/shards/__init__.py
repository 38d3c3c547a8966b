"""WebDataset-style tar shards: write any :class:`MultimodalDataset` into tar files of N samples,
read them back by random access (:class:`ShardDataset`, a map-style dataset — the ``shards:`` spec)
or as a stream (:class:`ShardStream`, an ``IterableDataset`` split over ranks and DataLoader workers
with a seeded shuffle buffer).

Layout of a shard folder (written by :func:`write_shards`, ``hssl shard``)::

    shard-000000.tar … shard-NNNNNN.tar   ``shard_size`` samples each (the last one fewer)
    index.json                            format, version, dataset name, modalities, label_names,
                                          feature_dims, audio_format, samples, and per shard
                                          {file, count, bytes, sha256}; the write-time skip report

Inside a tar (written with webdataset's ``TarWriter``, the layout every WebDataset reader
understands), the members of one sample are consecutive, sorted by extension, and share a key
``K`` (the sample's position in the source dataset, 9 digits — no dot, as WebDataset splits
``K.ext`` at the first dot). ``K.json`` lists the sample's other members, so a tar cut anywhere
never yields half a sample as a whole one (version 1 shards put ``K.json`` last instead; both read):

    K.png    image (H, W, 3) uint8, PNG (lossless)
    K.txt    caption, UTF-8
    K.flac   audio (T,) mono, FLAC PCM_24 (|error| ≤ 2⁻²³); a clip beyond [−1, 1] is stored as
    K.wav      WAV float32 instead (lossless); ``audio_format="wav"`` stores every clip that way
    K.npz    precomputed features {name: (T, D) float32} (``np.savez``; read with allow_pickle=False)
    K.json   {"uid", "label", "sample_rate", "meta", "members"}   always (meta JSON-encoded; non-JSON values → str)

Streaming goes through webdataset (tar expansion, shuffle buffer, resampling: :mod:`.stream`).
Exactly once per epoch (:class:`ShardStream`): the consumers are the ``world × num_workers``
(rank, worker) pairs, consumer ``c = rank·num_workers + worker``. With at least as many shards as
consumers, epoch e deals the shards of the seeded permutation ``default_rng([seed, e])`` round-robin
(``dist.partition``); otherwise every consumer reads every shard (in that order) and keeps the
samples whose running position p satisfies ``p mod consumers == c`` (decoding only those). Either
way every sample goes to exactly one consumer. Each consumer shuffles with webdataset's buffer of
``shuffle_buffer`` samples seeded by ``(seed, e, c)`` — a permutation of the consumer's samples,
different per epoch. ``resampled=True`` (``data.resample``) instead lets every consumer draw shards
with replacement (webdataset's ``ResampledShards``), endlessly: the multi-node recipe when exactly-once
does not matter.
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

from hybridssl.data.shards.codec import decode_sample, encode_sample
from hybridssl.data.shards.format import AUDIO_FORMATS, EXTENSIONS, FORMAT, INDEX, VERSION
from hybridssl.data.shards.index import ShardSet, open_shards, scan_tar
from hybridssl.data.shards.read import ShardDataset
from hybridssl.data.shards.stream import ShardStream
from hybridssl.data.shards.write import write_shards

__all__ = ["AUDIO_FORMATS", "EXTENSIONS", "FORMAT", "INDEX", "VERSION", "ShardDataset", "ShardSet", "ShardStream",
           "decode_sample", "encode_sample", "open_shards", "scan_tar", "write_shards"]
