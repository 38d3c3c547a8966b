"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, autocast, EMA, a NaN/inf
guard, atomic checkpoints and exact resume.

Exactness of resume: the data of step s depends only on (seed, s) (see ``StepBatchSampler``), and
every step reseeds torch's RNG and the masking generator from (seed, s); model, optimizer,
scheduler, EMA and weighting state are restored from the checkpoint. So N steps + resume to 2N
gives the same weights as 2N uninterrupted steps.

Under torchrun (``WORLD_SIZE`` > 1; see :mod:`hybridssl.dist`) the trainer creates the process group
(gloo on CPU, NCCL on GPU) and wraps the task in DDP (``train.distributed=ddp``, the default) or
FSDP2 (``fsdp``: parameters, gradients and optimizer state sharded across ranks; meant for the
``large`` preset). ``train.batch_size`` is the GLOBAL batch: rank r reads its slice r of the
step's global batch (``dist.RankBatchSampler``), so W ranks × batch_size/W see exactly what one
process sees, and a step on W ranks equals a step of one process (see ``hybridssl.task``).
Rank 0 alone writes metrics and checkpoints; checkpoints hold the full (unsharded) state — FSDP
gathers it — so a run resumes on any world size. ``torch.manual_seed`` gets ``+ rank`` so dropout
and drop-path differ across ranks (those runs are statistically, not bitwise, equivalent).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from hybridssl import dist
from hybridssl.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hybridssl.config import RunConfig
from hybridssl.data.batching import Collator, merge_batch_report
from hybridssl.data.loaders import train_loader
from hybridssl.data.neighbour_batches import caption_embedder, neighbour_batching
from hybridssl.data.sample import SkipReport
from hybridssl.errors import NonFiniteLossError
from hybridssl.losses.mlm import TextMasking
from hybridssl.models.hybrid import HybridModel
from hybridssl.models.interface import TowerModel
from hybridssl.schedule import clip_norm, warmup_cosine
from hybridssl.task import HybridTask
from hybridssl.tokenizer import TextTokenizer


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
    world_size: int = 1


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


def trim_metrics(path: Path, step: int) -> None:
    """Keep only the ``metrics.jsonl`` lines of steps ≤ ``step`` (a run killed after its last
    checkpoint logged steps that the resume repeats; a line cut by the kill is dropped too)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


DISTRIBUTED_MODES = ("ddp", "fsdp")


class Trainer:
    """Trains ``task`` (default: a :class:`HybridTask` around ``model``) on ``train_set`` with batches
    from ``collator`` (default: the run's :class:`Collator`). Another task (e.g. distillation) passes
    its own task and collator and reuses everything else."""

    def __init__(self, cfg: RunConfig, run_dir: Path, train_set: Any, tokenizer: TextTokenizer | None,
                 model: TowerModel, *, task: Any = None, collator: Collator | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.train_set = train_set
        self.tokenizer = tokenizer
        tc = cfg.train
        dist.init_from_env()
        self.rank, self.world_size = dist.rank(), dist.world_size()
        if tc.batch_size % self.world_size:
            raise ValueError(f"train.batch_size={tc.batch_size} is the global batch and must be a multiple of the "
                             f"world size {self.world_size}")
        if tc.distributed not in DISTRIBUTED_MODES:
            raise ValueError(f"train.distributed must be one of {DISTRIBUTED_MODES}, got {tc.distributed!r}")
        self.device = resolve_device(tc.device)
        if self.world_size > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", dist.local_rank())
        self.amp_dtype = autocast_dtype(tc.precision, self.device)
        if task is None:
            text = None
            if tokenizer is not None:
                text = TextMasking(tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids, tokenizer.pad_id)
            task = HybridTask(cfg, cast(HybridModel, model), text)
        self.task = task.to(self.device)
        self.dtype = next(self.task.parameters()).dtype  # floating inputs are cast to it (see to_device)
        self.ema = None
        if tc.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.task.model, decay=tc.ema_decay)
        self.fsdp = self.world_size > 1 and tc.distributed == "fsdp"
        # FSDP shards the model in place: an empty (meta) copy of it, to assemble the trained model from
        self._unsharded = copy.deepcopy(self.task.model).to("meta") if self.fsdp else None
        # what runs the forward (the task, or its DDP / FSDP wrapper), and the parameters FSDP leaves replicated
        self.engine, self.replicated = dist.wrap_for_ranks(self.task, self.cfg, self.device, self.world_size)
        self.optimizer = torch.optim.AdamW(param_groups(self.task, tc.weight_decay), lr=tc.lr, betas=(tc.betas[0], tc.betas[1]))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.collator = collator or Collator(cfg.preprocess, tokenizer, model.modalities, cfg.loss.caption_negatives)
        self.neighbours = neighbour_batching(cfg, train_set, tokenizer, model.modalities)  # data.batches=neighbours

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "bad_steps": self.state.bad_steps,
            "samples_seen": self.state.samples_seen,
            "report": self.state.report.state_dict(),
            "config": self.cfg.to_dict(),
            "modalities": list(self.task.model.modalities),
            "vocab_size": self.tokenizer.vocab_size if self.tokenizer else 0,
            "label_names": self.train_set.label_names,
            "world_size": self.world_size,
            "neighbour_batches": self.neighbours.state_dict() if self.neighbours else None,
        }

    def save(self, name: str | None = None) -> Path:
        """Rank 0 writes the full (unsharded) state; every rank returns once it is on disk."""
        folder = self.run_dir / "checkpoints" / (name or f"step_{self.state.step:06d}")
        model_state, optimizer_state = dist.full_state(self.engine, self.task, self.optimizer, self.fsdp)  # FSDP: a collective
        if dist.is_main():
            save_checkpoint(
                folder,
                model_state=model_state,
                state=self.state_dict(),
                tokenizer_json=self.tokenizer.to_str() if self.tokenizer else None,
                optimizer_state=optimizer_state,
                ema_state=self.ema.module.state_dict() if self.ema is not None else None,
            )
        dist.barrier()
        return folder

    def trained_model(self) -> nn.Module | None:
        """The model as one process holds it, for evaluation and export after :meth:`fit`.

        Without FSDP: the trained model itself. Under FSDP every parameter is a shard (a DTensor) that a
        single process cannot run, so this is a collective — every rank must call it — that gathers the
        full state onto rank 0 and loads it into an unsharded copy of the model (in eval mode); the
        other ranks get None."""
        if self._unsharded is None:
            return self.task.model
        model_state, _ = dist.full_state(self.engine, self.task, self.optimizer, self.fsdp)
        if not dist.is_main():
            return None
        model = self._unsharded.to_empty(device=self.device)
        prefix = "model."
        model.load_state_dict({k.removeprefix(prefix): v for k, v in model_state.items() if k.startswith(prefix)})
        for name, buf in self.task.model.named_buffers():  # FSDP shards parameters only; buffers are whole
            model.get_buffer(name).copy_(buf)
        return model.eval()

    def load(self, folder: Path) -> None:
        ck = load_checkpoint(folder, with_optimizer=True)
        dist.load_full_state(self.engine, self.task, self.optimizer, self.fsdp, ck["model"], ck["optimizer"])
        if self.ema is not None:
            if "ema" not in ck:
                raise ValueError(f"{folder} has no EMA weights but this run uses train.ema_decay > 0")
            self.ema.module.load_state_dict(ck["ema"])
        st = ck["state"]
        self.state.step = int(st["step"])
        self.state.bad_steps = int(st.get("bad_steps", 0))
        self.state.samples_seen = int(st.get("samples_seen", 0))
        self.state.report = SkipReport.from_state(st.get("report", {}))
        if self.neighbours is not None and st.get("neighbour_batches"):
            self.neighbours.load_state_dict(st["neighbour_batches"])
        if dist.is_main():
            trim_metrics(self.run_dir / "metrics.jsonl", self.state.step)

    # ------------------------------------------------------------------------------ loop
    def loader(self) -> DataLoader:
        """This rank's batches from the current step on (:func:`hybridssl.data.loaders.train_loader`)."""
        return train_loader(self.train_set, self.cfg, self.collator, self.state.step, self.rank, self.world_size,
                            self.neighbours)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch on the training device; floating inputs in the model's dtype (float32, or float64
        for the algebraic equivalence tests)."""
        return {k: (v.to(self.device, dtype=self.dtype if v.is_floating_point() else None, non_blocking=True)
                    if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _set_lr(self, step: int) -> float:
        tc = self.cfg.train
        lr = tc.lr * warmup_cosine(step, tc.steps, tc.warmup_steps, tc.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def fit(self, on_step: Callable[[StepLog], None] | None = None) -> TrainState:
        tc = self.cfg.train
        self.task.train()
        main = dist.is_main()
        metrics = (self.run_dir / "metrics.jsonl").open("a") if main else None
        batches = iter(self.loader())
        try:
            while self.state.step < tc.steps:
                if self.neighbours is not None and self.neighbours.due(self.state.step):
                    self.neighbours.refresh(self.state.step, caption_embedder(self.task.model, self.tokenizer, self.device))
                    batches = iter(self.loader())  # the new groups from this step on
                log = self._one_step(batches)
                if metrics is not None:
                    metrics.write(json.dumps(log.__dict__) + "\n")
                    metrics.flush()
                if on_step and main:
                    on_step(log)
                if tc.ckpt_every and self.state.step % tc.ckpt_every == 0 and self.state.step < tc.steps:
                    self.save()
        finally:
            if metrics is not None:
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
            n_global = self._global_count(batch["n"])
            if n_global == 0:
                continue
            n_samples += n_global
            seed = step_seed(tc.seed, step * tc.accum_steps + micro)
            torch.manual_seed(seed + self.rank)
            gen = torch.Generator().manual_seed(seed)
            with self.autocast(), self._no_sync(last=micro == tc.accum_steps - 1):
                out = self.engine(self.to_device(batch), step, gen)
            if not torch.isfinite(out.loss):
                finite = False
                if self.world_size > 1 and out.loss.requires_grad:  # DDP / FSDP expect the prepared backward
                    out.loss.backward()                               # (its gradients are dropped below)
                break
            with self._no_sync(last=micro == tc.accum_steps - 1):
                self.scaler.scale(out.loss / tc.accum_steps).backward()
            total += float(out.loss.detach()) / tc.accum_steps
            parts, weights, signals = out.parts, out.weights, out.signals
        if finite:
            for p in self.replicated:
                if p.grad is not None:
                    p.grad.copy_(dist.all_reduce_mean(p.grad))
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm(tc.grad_clip))
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP: a DTensor
            finite = bool(torch.isfinite(grad_norm))
            signals = {**signals, "grad_norm": float(grad_norm)}
        if finite and n_samples:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.task.after_optimizer_step()
            if self.ema is not None:
                self._update_ema(step)
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
                       n_samples / max(time.perf_counter() - t0, 1e-9), self.state.bad_steps, self.world_size)

    def _global_count(self, n: int) -> int:
        """Items of this micro-batch on all ranks (a rank with none still takes part in the step)."""
        if self.world_size == 1:
            return n
        return int(dist.all_reduce_sum(torch.tensor([n], device=self.device)).item())

    def _no_sync(self, last: bool):
        """DDP: skip the gradient all-reduce on all but the last accumulation micro-batch."""
        if last or self.engine is self.task or self.fsdp:
            return contextlib.nullcontext()
        return cast(Any, self.engine).no_sync()

    def _update_ema(self, step: int) -> None:
        assert self.ema is not None
        if not self.fsdp:
            self.ema.update(self.task.model, step=step)
            return
        # the EMA copy is a plain replicated module: it reads the full parameters (a collective per tensor)
        full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in self.task.model.state_dict().items()}
        self.ema.update(_StateView(full), step=step)

    def autocast(self):
        """The mixed-precision context of the forward (``train.precision``), or a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


class _StateView:
    """Just enough of a module for ``ModelEmaV3.update``: its ``state_dict()``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state
