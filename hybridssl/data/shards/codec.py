"""Encoding one sample into its tar members and decoding it back (the member formats of :mod:`hybridssl.data.shards`)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

from hybridssl.data.sample import BadItem, Sample
from hybridssl.data.shards.format import AUDIO_FORMATS


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
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in features.items()}
    np.savez(buf, **arrays)
    return buf.getvalue()


def encode_sample(sample: Sample, audio_format: str = "flac") -> dict[str, bytes]:
    """The tar members of one sample: ``{extension: bytes}`` (json always; png/txt/flac|wav/npz if present)."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    out: dict[str, bytes] = {}
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
    head = {"uid": sample.uid, "label": sample.label, "sample_rate": sample.sample_rate, "meta": sample.meta,
            "members": sorted(out)}                   # what a complete sample holds (tar members come sorted)
    out["json"] = json.dumps(head, default=str).encode()
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
    missing = sorted(set(head.get("members") or ()) - set(members))   # v2 lists them; v1 put json last instead
    if missing:
        raise BadItem(uid, "truncated_shard", f"member(s) {', '.join(missing)} missing (the tar was cut)")
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
    return Sample(uid=uid, image=image, caption=caption, audio=audio, sample_rate=int(rate) if audio is not None and rate is not None else None,
                  features=features, label=None if label is None else int(label), meta=dict(head.get("meta") or {}))
