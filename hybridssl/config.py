"""Typed run configuration: dataclasses, YAML presets (``configs/*.yaml``) and dotted overrides.

A run's resolved config is written to ``RUN_DIR/config.yaml``; library code receives these
objects (or plain arguments), never the CLI's arguments.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from edge_runtime.modalities import MODALITIES, is_sequence, ordered_modalities
from hybridssl.loss_config import LossConfig
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tracking import check_trackers

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MAX_CONFIG_BYTES = 1 << 20            # a config file is a page of YAML, never megabytes


@dataclass
class DataConfig:
    train: str = "builtin"            # dataset spec, see hybridssl.data.open.open_dataset
    val: str | None = None            # None: the built-in val split, or a seeded hold-out of train
    val_fraction: float = 0.1         # hold-out fraction for user data without a val spec
    train_size: int = 8192            # built-in dataset only
    val_size: int = 1000              # built-in dataset only
    num_workers: int = 0
    image_size: int = 64              # built-in dataset render size (before preprocessing)
    streaming: bool = False           # shards: specs only: read the tars sequentially (per-rank/worker split, shuffle buffer)
    shuffle_buffer: int = 1000        # streaming: samples held in the seeded shuffle buffer
    resample: bool = False            # streaming: consumers draw shards with replacement (webdataset), for multi-node
    allow_outside_paths: bool = False # manifest / hf: read files outside the data's folder (else skipped)
    batches: str = "random"           # "random" | "neighbours": groups of caption-space neighbours (hybridssl.data.neighbour_batches)
    neighbour_group: int = 8          # neighbours: items per group (divides train.batch_size)
    neighbour_refresh: int = 50       # neighbours: steps between two recomputations of the groups
    neighbour_pool: int = 16384       # neighbours: training items embedded and grouped per refresh

    def __post_init__(self) -> None:
        if self.batches not in ("random", "neighbours"):
            raise ValueError(f"data.batches must be 'random' or 'neighbours', got {self.batches!r}")

    def open_kwargs(self, spec: str) -> dict[str, Any]:
        """Constructor options of the dataset ``spec`` that come from this config."""
        return {"allow_outside_paths": True} if self.allow_outside_paths and spec.startswith(("manifest:", "hf:")) else {}


@dataclass
class ModelConfig:
    modalities: tuple[str, ...] = MODALITIES
    width: int = 192
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    shared_depth: int = 0             # last `shared_depth` blocks are one trunk shared by all modalities
    embed_dim: int = 128              # joint embedding space
    image_patch: int = 8
    image_stem: str = "patch"         # "patch" (ViT) | "conv" (stride-2 conv stack, Xiao et al. 2021) | "cnn" (conv + max-pool)
    pool: str = "mean"                # "mean" | "max" over the visible / real tokens
    audio_patch: tuple[int, int] = (16, 10)  # (mel bins, frames)
    drop_path: float = 0.0
    decoder_width: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    generative: str = "mae"           # "mae" | "vae" | "none"
    text_generative: str = "mlm"      # "mlm" | "none"
    vae_latent: int = 32
    image_mask_ratio: float = 0.75
    audio_mask_ratio: float = 0.75
    text_mask_ratio: float = 0.15
    norm_pix_loss: bool = True
    # Feature-sequence towers (one per stream the data carries, named seq_<stream>): masked-frame ratio,
    # frames per token (0: the power of two that makes the longest sequence about 16 tokens, see
    # hybridssl.preprocessing.AUTO_TOKENS) and the longest sequence kept.
    sequence_mask_ratio: float = 0.3
    sequence_patch: int = 0
    sequence_max_frames: int = 512
    # Per-modality overrides of width/depth/heads, e.g. {"image": {"width": 192, "depth": 12, "heads": 3}}:
    # a larger vision tower than text tower, as in CLIP. Towers of different widths need shared_depth 0.
    towers: dict[str, dict[str, int]] = field(default_factory=dict)

    def select_modalities(self, available: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """The towers to build for data carrying ``available``: the listed fixed modalities it has, and
        every feature stream (``seq_*``) it has — or, when ``modalities`` names ``seq_`` towers, those only."""
        named_sequences = any(is_sequence(m) for m in self.modalities)
        return ordered_modalities(m for m in available
                                  if m in self.modalities or (is_sequence(m) and not named_sequences))

    def tower(self, modality: str) -> tuple[int, int, int]:
        """(width, depth, heads) of one modality's tower: the global values unless ``towers`` overrides them."""
        over = dict(self.towers.get(modality) or {})
        unknown = sorted(set(over) - {"width", "depth", "heads"})
        if unknown:
            raise ValueError(f"model.towers.{modality}: unknown key(s) {unknown}; valid: depth, heads, width")
        width, depth, heads = (int(over.get(k, getattr(self, k))) for k in ("width", "depth", "heads"))
        if width < 1 or depth < 0 or heads < 1 or width % heads:
            raise ValueError(f"model.towers.{modality}: need width divisible by heads, got width {width}, "
                             f"depth {depth}, heads {heads}")
        return width, depth, heads


@dataclass
class WeightingConfig:
    strategy: str = "adaptive"        # fixed | uncertainty | dwa | gradnorm | adaptive
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    steps: int = 400
    batch_size: int = 64              # GLOBAL batch: under torchrun each of W ranks takes batch_size / W
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 40
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    accum_steps: int = 1
    precision: str = "auto"           # auto | fp32 | bf16 | fp16
    ema_decay: float = 0.0            # 0 disables the EMA of the weights
    seed: int = 0
    device: str = "auto"
    threads: int = 0                  # 0: leave torch's default
    log_every: int = 10
    ckpt_every: int = 200
    max_bad_steps: int = 20           # abort after this many skipped non-finite steps
    eval_size: int = 1000             # held-out items embedded for the end-of-run report
    distributed: str = "ddp"          # torchrun with > 1 process: "ddp" (replicated) | "fsdp" (sharded, large models)
    log: tuple[str, ...] = ()         # experiment trackers: tensorboard, mlflow, wandb (hybridssl.tracking)

    def __post_init__(self) -> None:
        """Refuse values no run can train with, before any data is read (ValueError naming the key)."""
        at_least = {"steps": 1, "batch_size": 1, "accum_steps": 1, "log_every": 1, "ckpt_every": 0,
                    "eval_size": 1, "warmup_steps": 0, "max_bad_steps": 0, "threads": 0}
        for key, low in at_least.items():
            if int(getattr(self, key)) < low:
                raise ValueError(f"train.{key} must be >= {low}, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "ema_decay"):
            v = float(getattr(self, key))
            if not math.isfinite(v) or v < 0 or (key == "lr" and v == 0):
                raise ValueError(f"train.{key} must be a finite number {'> 0' if key == 'lr' else '>= 0'}, got {v}")
        if not all(0 <= float(b) < 1 for b in self.betas):
            raise ValueError(f"train.betas must lie in [0, 1), got {self.betas}")
        try:
            self.log = check_trackers(self.log)
        except ValueError as e:
            raise ValueError(f"train.log: {e}") from None


@dataclass
class RunConfig:
    name: str = "small"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return build_section(cls, d, "")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def build_section(cls: type, d: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys with their dotted path."""
    d = dict(d or {})
    if cls is PreprocessSpec:
        return PreprocessSpec.from_dict(d)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; valid: {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        t = hints[k]
        if dataclasses.is_dataclass(t):
            kwargs[k] = build_section(cast(type, t), v, f"{where}{k}.")
        else:
            kwargs[k] = _coerce(v, t, where + k)
    return cls(**kwargs)


def _coerce(v: Any, t: Any, key: str) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if v is None:
        return None
    if origin is tuple:
        if isinstance(v, str):
            v = [s for s in v.split(",") if s]
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {v!r}")
        inner = args[0] if args else str
        return tuple(_coerce(x, inner, key) for x in v)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if isinstance(v, str) and v.lower() in ("none", "null"):
            return None
        return _coerce(v, non_none[0], key) if non_none else v
    if t is bool:
        if isinstance(v, str):
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{key}: expected a boolean, got {v!r}")
        return bool(v)
    if t in (int, float, str):
        try:
            return t(v)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected {t.__name__}, got {v!r}") from None
    if origin is dict or t is dict:
        if isinstance(v, str):
            v = yaml.safe_load(v)
        if not isinstance(v, dict):
            raise ValueError(f"{key}: expected a mapping, got {v!r}")
        return v
    return v


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> dict[str, Any]:
    """``"train.steps=100"`` → ``{"train": {"steps": 100}}`` (values parsed as YAML scalars)."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        raise ValueError(f"override {item!r}: the value is not a YAML scalar") from None
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def preset_path(name: str) -> Path:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(valid)}")
    return path


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A config file's mapping, read with ``yaml.safe_load`` after three checks that turn hostile or
    broken files into one-line ``ValueError``s: at most :data:`MAX_CONFIG_BYTES`, no aliases (an
    alias bomb expands to gigabytes once the nested references are copied; configs never need them),
    and valid YAML without python tags (``!!python/object`` is refused by the safe loader)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES})")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ValueError(f"{path}: YAML aliases (*name) are not allowed in config files")
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: not a valid config file{line}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a config file must hold a mapping")
    return loaded


def load_config(config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                _chain: tuple[Path, ...] = ()) -> RunConfig:
    """Load a preset name (``small``) or a YAML file, then apply dotted overrides in order.

    A YAML file may say ``base: small`` (a preset) or ``base: other.yaml`` (relative to the file) to
    start from another config; a ``base`` chain that comes back to a file already in it is refused.
    """
    d: dict[str, Any] = {}
    if config is None:
        config = "small"
    path = Path(config)
    if not path.suffix:
        path = preset_path(str(config))
    elif _chain and not path.is_absolute() and (_chain[-1].parent / path).exists():
        path = _chain[-1].parent / path
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ValueError(f"config 'base' chain is circular: {cycle}")
    loaded = read_yaml_mapping(path)
    base = loaded.pop("base", None)
    if base:
        d = load_config(str(base), (), (*_chain, path.resolve())).to_dict()
    d = deep_update(d, loaded)
    for item in overrides:
        d = deep_update(d, parse_override(item))
    d.setdefault("name", path.stem)
    return RunConfig.from_dict(d)


def flat_config(cfg: RunConfig) -> dict[str, Any]:
    """``{"section.key": value}`` of a config, nested mappings flattened with dots."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node
    walk("", cfg.to_dict())
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
