"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, autocast, EMA, a NaN/inf
guard, atomic checkpoints and exact resume.

Exactness of resume: the data of step s depends only on (seed, s) (see ``StepBatchSampler``), and
every step reseeds torch's RNG and the masking generator from (seed, s); model, optimizer,
scheduler, EMA and weighting state are restored from the checkpoint. So N steps + resume to 2N
gives the same weights as 2N uninterrupted steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hybridssl.checkpoint import load_checkpoint, save_checkpoint
from hybridssl.config import RunConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.batching import Collator, SafeDataset, StepBatchSampler, merge_batch_report
from hybridssl.data.sample import SkipReport
from hybridssl.models.hybrid import HybridModel
from hybridssl.schedule import warmup_cosine
from hybridssl.task import HybridTask, TextMasking
from hybridssl.tokenizer import TextTokenizer


class NonFiniteLossError(RuntimeError):
    """Raised when more than ``max_bad_steps`` steps produced a NaN/inf loss or gradient."""


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    parts: dict[str, float]
    weights: dict[str, float]
    signals: dict[str, float]
    samples_per_s: float
    skipped_steps: int


@dataclass
class TrainState:
    step: int = 0
    bad_steps: int = 0
    samples_seen: int = 0
    report: SkipReport = field(default_factory=SkipReport)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    raise ValueError(f"precision must be auto|fp32|bf16|fp16, got {precision!r}")


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1)


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, positional/modality embeddings, temperatures (1-D or pos)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".pos") or "modality_embed" in name or "mask_token" in name or "log_" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Trains ``task`` (default: a :class:`HybridTask` around ``model``) on ``train_set`` with batches
    from ``collator`` (default: the run's :class:`Collator`). Another task (e.g. distillation) passes
    its own task and collator and reuses everything else."""

    def __init__(self, cfg: RunConfig, run_dir: Path, train_set: MultimodalDataset, tokenizer: TextTokenizer | None,
                 model: HybridModel, *, task: nn.Module | None = None, collator: Collator | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.train_set = train_set
        self.tokenizer = tokenizer
        tc = cfg.train
        self.device = resolve_device(tc.device)
        self.amp_dtype = autocast_dtype(tc.precision, self.device)
        if task is None:
            text = None
            if tokenizer is not None:
                text = TextMasking(tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids)
            task = HybridTask(cfg, model, text)
        self.task = task.to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.task, tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = None
        if tc.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.task.model, decay=tc.ema_decay)
        self.state = TrainState()
        self.collator = collator or Collator(cfg.preprocess, tokenizer, model.modalities)

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "bad_steps": self.state.bad_steps,
            "samples_seen": self.state.samples_seen,
            "report": self.state.report.to_dict(),
            "config": self.cfg.to_dict(),
            "modalities": list(self.task.model.modalities),
            "vocab_size": self.tokenizer.vocab_size if self.tokenizer else 0,
            "label_names": self.train_set.label_names,
        }

    def save(self, name: str | None = None) -> Path:
        folder = self.run_dir / "checkpoints" / (name or f"step_{self.state.step:06d}")
        return save_checkpoint(
            folder,
            model_state=self.task.state_dict(),
            state=self.state_dict(),
            tokenizer_json=self.tokenizer.to_str() if self.tokenizer else None,
            optimizer_state=self.optimizer.state_dict(),
            ema_state=self.ema.module.state_dict() if self.ema is not None else None,
        )

    def load(self, folder: Path) -> None:
        ck = load_checkpoint(folder, with_optimizer=True)
        self.task.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.ema is not None:
            if "ema" not in ck:
                raise ValueError(f"{folder} has no EMA weights but this run uses train.ema_decay > 0")
            self.ema.module.load_state_dict(ck["ema"])
        st = ck["state"]
        self.state.step = int(st["step"])
        self.state.bad_steps = int(st.get("bad_steps", 0))
        self.state.samples_seen = int(st.get("samples_seen", 0))
        rep = st.get("report", {})
        self.state.report.skipped.update(rep.get("skipped", {}))
        self.state.report.repaired.update(rep.get("repaired", {}))

    # ------------------------------------------------------------------------------ loop
    def loader(self) -> DataLoader:
        tc = self.cfg.train
        sampler = StepBatchSampler(len(self.train_set), tc.batch_size, tc.seed, tc.steps * tc.accum_steps,
                                   start_step=self.state.step * tc.accum_steps)
        return DataLoader(SafeDataset(self.train_set), batch_sampler=sampler, collate_fn=self.collator,
                          num_workers=self.cfg.data.num_workers, persistent_workers=False)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _set_lr(self, step: int) -> float:
        tc = self.cfg.train
        lr = tc.lr * warmup_cosine(step, tc.steps, tc.warmup_steps, tc.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def fit(self, on_step: Callable[[StepLog], None] | None = None) -> TrainState:
        tc = self.cfg.train
        self.task.train()
        metrics = (self.run_dir / "metrics.jsonl").open("a")
        batches = iter(self.loader())
        try:
            while self.state.step < tc.steps:
                log = self._one_step(batches)
                metrics.write(json.dumps(log.__dict__) + "\n")
                metrics.flush()
                if on_step:
                    on_step(log)
                if tc.ckpt_every and self.state.step % tc.ckpt_every == 0 and self.state.step < tc.steps:
                    self.save()
        finally:
            metrics.close()
        self.save()
        return self.state

    def _one_step(self, batches) -> StepLog:
        tc = self.cfg.train
        t0 = time.perf_counter()
        step = self.state.step
        lr = self._set_lr(step)
        self.optimizer.zero_grad(set_to_none=True)
        parts: dict[str, float] = {}
        weights: dict[str, float] = {}
        signals: dict[str, float] = {}
        total = 0.0
        n_samples = 0
        finite = True
        for micro in range(tc.accum_steps):
            batch = next(batches)
            merge_batch_report(self.state.report, batch)
            if batch["n"] == 0:
                continue
            n_samples += batch["n"]
            seed = step_seed(tc.seed, step * tc.accum_steps + micro)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            with self._autocast():
                out = self.task(self._to_device(batch), step, gen)
            if not torch.isfinite(out.loss):
                finite = False
                break
            self.scaler.scale(out.loss / tc.accum_steps).backward()
            total += float(out.loss.detach()) / tc.accum_steps
            parts, weights, signals = out.parts, out.weights, out.signals
        if finite:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else math.inf)
            finite = bool(torch.isfinite(grad_norm))
            signals = {**signals, "grad_norm": float(grad_norm)}
        if finite and n_samples:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.task.after_optimizer_step()
            if self.ema is not None:
                self.ema.update(self.task.model, step=step)
        elif not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.bad_steps += 1
            if self.state.bad_steps > tc.max_bad_steps:
                raise NonFiniteLossError(
                    f"{self.state.bad_steps} steps had a non-finite loss or gradient (limit train.max_bad_steps="
                    f"{tc.max_bad_steps}); last at step {step}. Lower train.lr, enable train.grad_clip, or check the data."
                )
        self.state.step += 1
        self.state.samples_seen += n_samples
        return StepLog(step + 1, total if finite else float("nan"), lr, parts, weights, signals,
                       n_samples / max(time.perf_counter() - t0, 1e-9), self.state.bad_steps)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)
