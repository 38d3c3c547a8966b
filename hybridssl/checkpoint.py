"""Checkpoints: weights in safetensors, everything else in JSON — never pickle.

Layout of ``RUN_DIR/checkpoints/step_000400/`` (and ``last`` → the newest, ``final``)::

    model.safetensors       the task's trainable state (model, temperature, weighting params)
    ema.safetensors         EMA weights of the model (when enabled)
    optimizer.safetensors   optimizer tensors (moments), flattened; ``optimizer.json`` the rest
    state.json              step, RNG-free trainer counters, skip report, config, preprocessing spec
    tokenizer.json          the text tokenizer
    checksums.json          ``{file name: sha256}`` of every file above, written last

Loading verifies every listed file against ``checksums.json`` (a flipped byte in a tensor is a
``ValueError`` "corrupt", never a silent resume); :func:`latest_valid_checkpoint` falls back to the
newest checkpoint that verifies. Checkpoints written before checksums existed load unverified.

Every file is written to a temporary name in the same folder and renamed (atomic on POSIX); the
checkpoint folder itself is assembled under ``.tmp-…`` and renamed last, so a killed run leaves
either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge_runtime.bundle import sha256_file

CHECKPOINT_FILES = ("model.safetensors", "state.json")
CHECKSUMS = "checksums.json"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return _contiguous(tensors), {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: Path, *, model_state: dict[str, torch.Tensor], state: dict[str, Any],
                    tokenizer_json: str | None = None, optimizer_state: dict[str, Any] | None = None,
                    ema_state: dict[str, torch.Tensor] | None = None) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
    if ema_state is not None:
        save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
    if optimizer_state is not None:
        tensors, meta = flatten_optimizer(optimizer_state)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    if tokenizer_json is not None:
        (tmp / "tokenizer.json").write_text(tokenizer_json)
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
    write_checksums(tmp)
    old = folder.with_name(f".old-{folder.name}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def write_checksums(folder: Path) -> None:
    """Record the sha256 of every file of a checkpoint folder in its ``checksums.json`` (last)."""
    folder = Path(folder)
    sums = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS}
    atomic_write_text(folder / CHECKSUMS, json.dumps(sums, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Raise ``ValueError`` unless every required file exists and every file in ``checksums.json``
    has its recorded sha256 (a checkpoint without ``checksums.json`` predates them: not verified)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no checkpoint at {folder}")
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"checkpoint {folder} is incomplete: missing {', '.join(missing)}")
    if not (folder / CHECKSUMS).is_file():
        return
    try:
        sums = json.loads((folder / CHECKSUMS).read_text())
    except ValueError as e:
        raise ValueError(f"checkpoint {folder} is corrupt: {CHECKSUMS}: {e}") from e
    for name, digest in sorted(sums.items()):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"checkpoint {folder} is incomplete: missing {name}")
        if sha256_file(path) != digest:
            raise ValueError(f"checkpoint {folder} is corrupt: {name} does not match its sha256")


def load_checkpoint(folder: Path, with_optimizer: bool = False) -> dict[str, Any]:
    folder = Path(folder)
    verify_checkpoint(folder)
    try:
        out: dict[str, Any] = {"model": load_file(str(folder / "model.safetensors"))}
        out["state"] = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError, SafetensorError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"checkpoint {folder} is corrupt: {e}") from e
    if (folder / "ema.safetensors").is_file():
        out["ema"] = load_file(str(folder / "ema.safetensors"))
    if (folder / "tokenizer.json").is_file():
        out["tokenizer_json"] = (folder / "tokenizer.json").read_text()
    if with_optimizer:
        if not (folder / "optimizer.safetensors").is_file():
            raise ValueError(f"checkpoint {folder} has no optimizer state; it cannot be resumed exactly")
        meta = json.loads((folder / "optimizer.json").read_text())
        out["optimizer"] = unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), meta)
    return out


def read_state(folder: Path) -> dict[str, Any]:
    """Only ``state.json`` of a checkpoint (step, config, ...), without loading any weights."""
    path = Path(folder) / "state.json"
    if not path.is_file():
        raise ValueError(f"checkpoint {folder} is incomplete: missing state.json")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"checkpoint {folder} is corrupt: {e}") from e


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (``step_*``; half-written ``.tmp-*`` folders never count)."""
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step_*"))
    return ckpts[-1] if ckpts else None


def latest_valid_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that passes :func:`verify_checkpoint`; each newer one that fails is
    named in a warning (the run resumes from the one before it, losing only the steps in between)."""
    for folder in sorted((Path(run_dir) / "checkpoints").glob("step_*"), reverse=True):
        try:
            verify_checkpoint(folder)
        except ValueError as e:
            warnings.warn(f"{e}; falling back to the checkpoint before it", stacklevel=2)
            continue
        return folder
    return None
