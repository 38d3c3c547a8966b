"""The hybridssl trainer driving a :class:`distill.task.DistillTask` instead of the hybrid task.

Everything of :class:`hybridssl.trainer.Trainer` is reused — step-indexed batches, warm-up + cosine
schedule, AdamW parameter groups, clipping, gradient accumulation, autocast, EMA, the non-finite
guard, ``metrics.jsonl`` and atomic checkpoints — except how the task is built (given here) and the
checkpoint state, which also records ``model_kind: "student"``, the student spec, the distillation
config and the teacher it came from (``extra_state``). Only the task's state (the student and the
contrastive temperature) is saved: the teacher is not a submodule of the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distill.task import DistillCollator, DistillTask
from hybridssl.config import RunConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.tokenizer import TextTokenizer
from hybridssl.trainer import Trainer, TrainState, autocast_dtype, param_groups, resolve_device


class DistillTrainer(Trainer):
    def __init__(self, cfg: RunConfig, run_dir: Path, train_set: MultimodalDataset, tokenizer: TextTokenizer | None,
                 task: DistillTask, collator: DistillCollator, extra_state: dict[str, Any]) -> None:
        # Trainer.__init__ builds a HybridTask; everything else below is what it sets up.
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.train_set = train_set
        self.tokenizer = tokenizer
        tc = cfg.train
        self.device = resolve_device(tc.device)
        self.amp_dtype = autocast_dtype(tc.precision, self.device)
        self.task = task.to(self.device)
        task.teacher.to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.task, tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = None
        if tc.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.task.model, decay=tc.ema_decay)
        self.state = TrainState()
        self.collator = collator
        self.extra_state = extra_state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.extra_state}
