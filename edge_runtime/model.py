"""``EdgeModel``: a verified bundle, one back end per tower, numpy preprocessing, and
embedding / zero-shot classification on single items or batches.

Embeddings: every ``embed_*`` returns float32 rows of unit L2 norm, ``(E,)`` for one item and
``(N, E)`` for a batch (batches are run in chunks of ``batch_size``). Feature sequences (a
``seq_<stream>`` tower): ``embed_sequence`` of a ``(T, D)`` array or a list of them (lengths may
differ; :mod:`edge_runtime.sequence` normalises, pads and masks them).

Zero-shot classification (CLIP, Radford et al. 2021): for labels c with prompts p_{c,1..P}
(the manifest's ``labels.prompts[c]`` when present, else ``template.format(c)`` for the
manifest's ``labels.templates``, else :data:`DEFAULT_TEMPLATES`),

    w_c = normalise(mean_p normalise(embed_text(p_{c,p})))          # (C, E), cached per label set
    score_c = softmax_c(s · cos(x, w_c))

with s the manifest's ``logit_scale`` (the exporter's learned 1/temperature) when it carries one,
else 100 (CLIP's clamp of its learned scale; the hssl teacher's temperature starts at 0.07 → 14.3
and is learned downward). The scores are calibrated in the CLIP sense: a softmax at the scale the
model was trained with. A bundle ``head`` (``{"modality", "output", "names"}``) is used instead when
no labels are passed and the item is of the head's modality: scores = softmax(logits).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edge_runtime.backends import Backend, BackendError, choose_backend, open_backend
from edge_runtime.bundle import Bundle, TowerFiles, read_bundle
from edge_runtime.items import as_items, first_item, infer_modality
from edge_runtime.modalities import TIME, is_sequence, sequence_stream
from edge_runtime.preprocess import TextEncoder, load_waveform, log_mel, preprocess_image
from edge_runtime.schema import BundleError
from edge_runtime.sequence import preprocess_sequences
from edge_runtime.spec import AudioSpec, ImageSpec, SequenceSpec, audio_spec, image_spec, sequence_spec
from edge_runtime.validate import InputError, check_feed, check_frame_feed, check_token_feed

_T = TypeVar("_T")

DEFAULT_TEMPLATES = ("a photo of a {}", "{}")
DEFAULT_LOGIT_SCALE = 100.0


@dataclass
class Tower:
    """One modality's model on its back end."""

    files: TowerFiles
    backend: Backend

    @property
    def modality(self) -> str:
        return self.files.modality


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12))


class EdgeModel:
    def __init__(self, bundle: Bundle, towers: dict[str, Tower], text: TextEncoder | None,
                 batch_size: int = 32) -> None:
        self.bundle = bundle
        self.towers = towers
        self.text = text
        self.batch_size = batch_size
        prep = bundle.manifest["preprocessing"]
        self.image_spec: ImageSpec | None = image_spec(prep) if "image" in towers else None
        self.audio_spec: AudioSpec | None = audio_spec(prep) if "audio" in towers else None
        self.sequence_specs: dict[str, SequenceSpec] = {m: sequence_spec(prep, sequence_stream(m))
                                                        for m in towers if is_sequence(m)}
        self._label_cache: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, bundle_dir: str | Path, backend: str = "auto", threads: int | None = None,
             precision: str | dict[str, str] | None = None, warmup: bool = True, batch_size: int = 32,
             providers: list[str] | None = None, modalities: Sequence[str] | None = None) -> "EdgeModel":
        """Verify the bundle (sha256 of every file), open one back end per tower, warm up.

        ``precision``: None = each tower's default, a name (fp32/fp16/int8) for every tower, or a
        dict per modality. ``threads``: intra-op threads of the back end (None = its default).
        ``modalities``: load only these towers (default: all)."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise InputError(f"threads must be a non-negative integer, got {threads!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        bundle = read_bundle(bundle_dir)
        wanted = bundle.modalities if modalities is None else tuple(modalities)
        missing = [m for m in wanted if m not in bundle.modalities]
        if missing or not wanted:
            raise InputError(f"cannot load towers {list(wanted)}: the bundle has {', '.join(bundle.modalities)}")
        towers = {}
        for m in (m for m in bundle.modalities if m in wanted):
            want = precision.get(m) if isinstance(precision, dict) else precision
            files = bundle.tower(m, want)
            name = choose_backend(files.model, backend, files.backend)
            towers[m] = Tower(files, open_backend(name, files.model, threads, files.inference_precision,
                                                  files.files.get("weights"), providers))
            _check_io(towers[m], bundle)
        text = None
        if "text" in towers:
            if bundle.tokenizer_path is None or bundle.max_length is None:
                raise BundleError(f"{bundle.root}: the text tower has no tokenizer entry")
            text = TextEncoder.from_file(bundle.tokenizer_path, bundle.max_length)
        model = cls(bundle, towers, text, batch_size)
        if warmup:
            model.warm_up()
        return model

    def warm_up(self) -> None:
        """One batch-of-one pass per tower (first-run allocations and graph specialisation)."""
        for m, tower in self.towers.items():
            feed = {}
            patch = self.sequence_specs[m].patch if m in self.sequence_specs else 1
            for spec in tower.files.inputs:
                shape = [d if isinstance(d, int) else patch if d == TIME else 1 for d in spec["shape"]]
                feed[spec["name"]] = np.ones(shape, dtype=spec["dtype"]) if spec["dtype"].startswith("int") else np.zeros(shape, dtype=spec["dtype"])
            self.run(m, feed)

    # ------------------------------------------------------------------ facts
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.towers)

    @property
    def embed_dim(self) -> int:
        return self.bundle.embed_dim

    @property
    def fingerprint(self) -> str:
        return self.bundle.fingerprint

    @property
    def backends(self) -> dict[str, str]:
        return {m: t.backend.name for m, t in self.towers.items()}

    @property
    def precisions(self) -> dict[str, str]:
        return {m: t.files.precision for m, t in self.towers.items()}

    @property
    def logit_scale(self) -> float:
        return float(self.bundle.manifest.get("logit_scale") or DEFAULT_LOGIT_SCALE)

    def _tower(self, modality: str) -> Tower:
        if modality not in self.towers:
            raise InputError(f"this bundle has no {modality} tower (it has {', '.join(self.modalities)})")
        return self.towers[modality]

    # ------------------------------------------------------------------ running
    def run(self, modality: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Preprocessed inputs (checked against the manifest) → (N, E) unit-norm float32 embeddings."""
        tower = self._tower(modality)
        feed = self._checked_feed(feed, tower)
        n = next(iter(feed.values())).shape[0]
        if n <= self.batch_size:
            return self._check_output(tower.backend.run(feed), n, tower)
        outs = [tower.backend.run({k: v[i : i + self.batch_size] for k, v in feed.items()})
                for i in range(0, n, self.batch_size)]
        return self._check_output(np.concatenate(outs), n, tower)

    def _checked_feed(self, feed: Any, tower: Tower) -> dict[str, np.ndarray]:
        """check_feed, plus token ids within the vocabulary and a valid mask for the text tower."""
        checked = check_feed(feed, tower.files.inputs, f"the {tower.modality} model")
        names = [spec["name"] for spec in tower.files.inputs]
        if tower.modality == "text" and self.text is not None:
            check_token_feed(checked[names[0]], checked[names[1]] if len(names) > 1 else None, self.text.vocab_size)
        if tower.modality in self.sequence_specs:
            check_frame_feed(checked[names[0]], checked[names[1]], self.sequence_specs[tower.modality])
        return checked

    def _check_output(self, out: np.ndarray, n: int, tower: Tower) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (n, self.embed_dim):
            raise BundleError(f"{tower.files.model.name} returned shape {out.shape}, expected {(n, self.embed_dim)}")
        if not np.isfinite(out).all():
            raise InputError(f"{tower.files.model.name} returned non-finite embeddings for these inputs (out of range?)")
        return _unit(out)

    def loaded_spec(self, value: _T | None, modality: str) -> _T:
        """The preprocessing of a tower the model holds (BundleError when it was not loaded)."""
        if value is None:
            raise BundleError(f"{self.bundle.root}: no {modality} tower loaded (loaded: {', '.join(self.towers)})")
        return value

    def preprocess_images(self, images: Sequence[Any]) -> dict[str, np.ndarray]:
        tower = self._tower("image")
        spec = self.loaded_spec(self.image_spec, "image")
        pixels = np.stack([preprocess_image(x, spec) for x in images])  # (N, 3, S, S)
        return {tower.files.inputs[0]["name"]: pixels}

    def preprocess_texts(self, texts: Sequence[Any]) -> dict[str, np.ndarray]:
        tower = self._tower("text")
        text = self.loaded_spec(self.text, "text")
        ids, mask = text.encode(list(texts))  # (N, L) int64 each
        names = [spec["name"] for spec in tower.files.inputs]
        return {names[0]: ids, names[1]: mask} if len(names) == 2 else {names[0]: ids}

    def preprocess_audios(self, clips: Sequence[Any], sample_rate: int | None = None) -> dict[str, np.ndarray]:
        tower = self._tower("audio")
        # one clip at a time: the (T, n_fft) frames of a clip stay in cache (a batched log-mel was 3× slower)
        spec = self.loaded_spec(self.audio_spec, "audio")
        mels = [log_mel(load_waveform(c, spec, sample_rate), spec) for c in clips]  # (M, T) each
        return {tower.files.inputs[0]["name"]: np.stack(mels)[:, None]}                                   # (N, 1, M, T)

    # ------------------------------------------------------------------ embedding
    def embed_image(self, images: Any) -> np.ndarray:
        """Path / bytes / PIL image / (H, W, 3) uint8 array, or a list of them (or (N, H, W, 3))."""
        return self.embed(images, "image")

    def embed_text(self, texts: Any) -> np.ndarray:
        """A string or a list of strings (over-long texts are truncated to max_length tokens)."""
        return self.embed(texts, "text")

    def embed_audio(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """A file path / bytes / (T,) float waveform (with ``sample_rate``) / (wave, rate) pair, or a
        list of them, or an (N, T) array of mono waveforms at ``sample_rate``. Clips are trimmed to
        ``clip_seconds`` (or zero-padded). A 2-D array with at most :data:`edge_runtime.items.MAX_CHANNELS` columns is
        refused (InputError) as a probable (frames, channels) clip: mix it to mono first; files with
        several channels are averaged to mono."""
        return self.embed(audio, "audio", sample_rate)

    def embed_sequence(self, frames: Any, modality: str | None = None) -> np.ndarray:
        """A ``(T, D)`` array of frames (channels last) or a list of them, or an ``(N, T, D)`` array →
        (E,) or (N, E). ``modality``: the ``seq_<stream>`` tower, needed only when the bundle has several.
        InputError for NaN / inf, the wrong channel count, no frame or more than ``max_frames``."""
        return self.embed(frames, modality or self.sequence_tower())

    def sequence_tower(self) -> str:
        """The bundle's one feature-sequence tower (InputError when it has none or several)."""
        towers = list(self.sequence_specs)
        if len(towers) != 1:
            raise InputError(f"pass modality=...: the bundle has {'no' if not towers else 'several'} feature-sequence "
                             f"towers ({', '.join(towers) or 'none'}; all towers: {', '.join(self.modalities)})")
        return towers[0]

    def preprocess_sequences(self, items: Sequence[Any], modality: str) -> dict[str, np.ndarray]:
        self._tower(modality)
        return preprocess_sequences(items, self.loaded_spec(self.sequence_specs.get(modality), modality))

    def embed(self, item: Any, modality: str | None = None, sample_rate: int | None = None) -> np.ndarray:
        """Embed one item → (E,), or a batch of one modality → (N, E); the modality is inferred
        when not given (:func:`infer_modality`)."""
        modality = modality or infer_modality(first_item(item))
        self._tower(modality)
        items, single = as_items(item, modality)
        out = self.run(modality, self.preprocess(items, modality, sample_rate))
        return out[0] if single else out

    def preprocess(self, items: Sequence[Any], modality: str, sample_rate: int | None = None) -> dict[str, np.ndarray]:
        """A list of raw items of one modality → the tower's input feed."""
        if modality == "image":
            return self.preprocess_images(items)
        if modality == "text":
            return self.preprocess_texts(items)
        if is_sequence(modality):
            return self.preprocess_sequences(items, modality)
        return self.preprocess_audios(items, sample_rate)

    # ------------------------------------------------------------------ classification
    def label_embeddings(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """(C, E) class embeddings of ``labels`` (prompt-ensembled, cached per label set)."""
        labels = _check_labels(labels)
        templates = None if templates is None else tuple(_check_templates(templates))
        key = (tuple(labels), templates)
        if key in self._label_cache:
            self._label_cache.move_to_end(key)
            return self._label_cache[key]
        groups = [self._prompts(label, templates) for label in labels]
        flat = self.embed_text([p for g in groups for p in g])        # (sum P, E)
        rows, start = [], 0
        for g in groups:
            rows.append(_unit(flat[start : start + len(g)]).mean(axis=0))
            start += len(g)
        emb = _unit(np.stack(rows)).astype(np.float32)                  # (C, E)
        self._label_cache[key] = emb
        if len(self._label_cache) > 32:
            self._label_cache.popitem(last=False)
        return emb

    def _prompts(self, label: str, templates: tuple[str, ...] | None) -> list[str]:
        meta = self.bundle.manifest.get("labels") or {}
        if templates is None and label in (meta.get("prompts") or {}):
            return list(meta["prompts"][label])
        return [t.format(label) for t in (templates or meta.get("templates") or DEFAULT_TEMPLATES)]

    def classify(self, item: Any, labels: Sequence[str] | None = None, modality: str | None = None,
                 templates: Sequence[str] | None = None, top_k: int | None = None,
                 sample_rate: int | None = None) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """Labels with scores (descending) for one item, or a list of such lists for a batch."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError(f"top_k must be a positive integer, got {top_k!r}")
        modality = modality or infer_modality(first_item(item))
        tower = self._tower(modality)
        items, single = as_items(item, modality)
        head = self.bundle.manifest.get("head")
        if labels is None and head and head["modality"] == modality:
            names = list(head["names"])
            feed = self._checked_feed(self.preprocess(items, modality, sample_rate), tower)
            logits = tower.backend.run_outputs(feed, [head["output"]])[head["output"]].astype(np.float32)  # (N, C)
            if logits.shape != (len(items), len(names)) or not np.isfinite(logits).all():
                raise BundleError(f"the {modality} head returned {logits.shape} logits for {len(names)} names")
            probs = _softmax(logits)
        else:
            names = _check_labels(labels if labels is not None else (self.bundle.manifest.get("labels") or {}).get("names") or
                                  _no_labels())
            if "text" not in self.towers:
                raise InputError("zero-shot classification needs a text tower; this bundle has none")
            x = self.run(modality, self.preprocess(items, modality, sample_rate))               # (N, E)
            probs = _softmax(self.logit_scale * (x @ self.label_embeddings(names, templates).T))  # (N, C)
        ranked = [_ranked(names, p, top_k) for p in probs]
        return ranked[0] if single else ranked


# ----------------------------------------------------------------------------- helpers


def _check_io(tower: Tower, bundle: Bundle) -> None:
    """The model file's input/output names agree with the manifest."""
    want_in = sorted(spec["name"] for spec in tower.files.inputs)
    want_out = [spec["name"] for spec in tower.files.outputs]
    got_in = sorted(tower.backend.input_names)
    if want_in != got_in or tower.backend.output_names[: len(want_out)] != want_out:
        raise BundleError(f"{tower.files.model.name}: the model's inputs {got_in} / outputs {tower.backend.output_names} "
                          f"differ from the manifest's {want_in} / {want_out}")


def _no_labels() -> list[str]:
    raise InputError("pass labels=[...]: the bundle names no labels")


def _check_labels(labels: Any) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise InputError("labels must be a non-empty list of strings")
    out = []
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise InputError(f"every label must be a non-empty string, got {label!r}")
        out.append(label)
    if len(set(out)) != len(out):
        raise InputError("labels must be unique")
    return out


def _check_templates(templates: Any) -> list[str]:
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise InputError("templates must be a non-empty list of strings containing '{}'")
    for t in templates:
        if not isinstance(t, str) or "{}" not in t:
            raise InputError(f"every template must be a string containing '{{}}', got {t!r}")
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError) as e:
            raise InputError(f"template {t!r} cannot be filled: {e}") from None
    return list(templates)


def _ranked(names: list[str], probs: np.ndarray, top_k: int | None) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[: top_k or len(names)]
    return [(names[i], float(probs[i])) for i in order]


__all__ = ["EdgeModel", "InputError", "BundleError", "BackendError", "infer_modality", "DEFAULT_TEMPLATES"]
