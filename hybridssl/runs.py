"""Rebuilding a trained run's model from its run directory — the one loader, keyed on the run's
model kind — and what a loaded run is (:class:`LoadedRun`).

A run directory holds ``checkpoints/step_*/`` (safetensors weights + JSON state, see
:mod:`hybridssl.checkpoint`); the state's ``model_kind`` names the kind of model: ``"hybrid"`` (the
pretrained teacher, also every run written before the field existed) or a kind a plugin registers
— ``distill`` registers ``"student"``. :func:`load_run` dispatches on it; a kind is registered with
:func:`register_model_kind` or through the ``hssl.model_kinds`` entry-point group (how ``distill``
is found without hybridssl importing it). Every loaded model offers
:class:`hybridssl.models.interface.TowerModel`. Nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hybridssl.checkpoint import latest_checkpoint, load_checkpoint, read_state
from hybridssl.config import RunConfig
from hybridssl.models.hybrid import HybridModel
from hybridssl.models.interface import TowerModel
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer

#: ``kind → loader(run_dir, folder, checkpoint, device) -> LoadedRun``
Loader = Callable[[Path, Path, dict[str, Any], str], "LoadedRun"]
MODEL_KINDS: dict[str, Loader] = {}
ENTRY_POINT_GROUP = "hssl.model_kinds"


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    model: Any                   # a TowerModel (HybridModel, StudentModel, ...)
    tokenizer: TextTokenizer | None
    state: dict[str, Any]

    @property
    def spec(self) -> PreprocessSpec:
        return self.cfg.preprocess


def build_model(cfg: RunConfig, vocab_size: int, modalities: tuple[str, ...] | None = None) -> HybridModel:
    mcfg = cfg.model
    if modalities is not None:
        mcfg = replace(mcfg, modalities=mcfg.select_modalities(modalities))
        if not mcfg.modalities:
            raise ValueError(f"the data carries {modalities}, none of the model's modalities {cfg.model.modalities}")
    return HybridModel(mcfg, cfg.preprocess, vocab_size)


def count_parameters(model: HybridModel, modality: str) -> int:
    """Parameters of one inference tower: its encoder, the shared trunk, its norm and head."""
    mods = [model.encoders[modality], model.norms[modality], model.heads[modality], model.trunk]
    return sum(p.numel() for mod in mods for p in mod.parameters())


def register_model_kind(kind: str, loader: Loader) -> None:
    """Make :func:`load_run` rebuild runs whose state says ``model_kind: kind`` with ``loader``."""
    MODEL_KINDS[kind] = loader


def checkpoint_folder(run_dir: str | Path, checkpoint: str | None = None) -> Path:
    """``RUN_DIR/checkpoints/<checkpoint>`` or the latest one; FileNotFoundError when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    folder = run_dir / "checkpoints" / checkpoint if checkpoint else latest_checkpoint(run_dir)
    if folder is None or not folder.exists():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint (expected {run_dir}/checkpoints/step_*)")
    return folder


def run_kind(run_dir: str | Path, checkpoint: str | None = None) -> str:
    """The run's model kind, read from the checkpoint's JSON state (no weights loaded)."""
    return str(read_state(checkpoint_folder(run_dir, checkpoint)).get("model_kind", "hybrid"))


def _loader(kind: str, run_dir: Path) -> Loader:
    if kind not in MODEL_KINDS:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                register_model_kind(kind, ep.load())
    if kind not in MODEL_KINDS:
        raise ValueError(f"{run_dir}: unknown model_kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})")
    return MODEL_KINDS[kind]


def load_run(run_dir: str | Path, checkpoint: str | None = None, ema: bool = False, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of any run directory (teacher, student, ...), in eval mode on ``device``.
    ``ema``: the EMA weights when the checkpoint has them (hybrid runs)."""
    run_dir = Path(run_dir)
    folder = checkpoint_folder(run_dir, checkpoint)
    kind = run_kind(run_dir, checkpoint)
    loaded = _loader(kind, run_dir)(run_dir, folder, {"ema": ema}, device)
    if not isinstance(loaded.model, TowerModel):
        raise TypeError(f"the {kind} loader returned a {type(loaded.model).__name__}, not a TowerModel")
    return loaded


def load_hybrid(run_dir: Path, folder: Path, options: dict[str, Any], device: str) -> LoadedRun:
    """The ``hybrid`` kind: a pretrained :class:`HybridModel` (safetensors + JSON only)."""
    ck = load_checkpoint(folder)
    state = ck["state"]
    cfg = RunConfig.from_dict(state["config"])
    model = build_model(cfg, int(state.get("vocab_size", 0)), tuple(state["modalities"]))
    weights = ck["ema"] if options.get("ema") and "ema" in ck else {
        k[len("model."):]: v for k, v in ck["model"].items() if k.startswith("model.")
    }
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.to(device).eval()
    return LoadedRun(run_dir, cfg, model, checkpoint_tokenizer(ck, cfg), state)


def checkpoint_tokenizer(ck: dict[str, Any], cfg: RunConfig) -> TextTokenizer | None:
    """The text tokenizer a checkpoint carries (``tokenizer_json``), or None."""
    if "tokenizer_json" not in ck:
        return None
    from tokenizers import Tokenizer

    return TextTokenizer(Tokenizer.from_str(ck["tokenizer_json"]), cfg.preprocess.text.max_length)


register_model_kind("hybrid", load_hybrid)
