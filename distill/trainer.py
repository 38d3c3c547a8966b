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

from distill.task import DistillCollator, DistillTask
from hybridssl.config import RunConfig
from hybridssl.tokenizer import TextTokenizer
from hybridssl.trainer import Trainer


class DistillTrainer(Trainer):
    def __init__(self, cfg: RunConfig, run_dir: Path, train_set: Any, tokenizer: TextTokenizer | None,
                 task: DistillTask, collator: DistillCollator, extra_state: dict[str, Any]) -> None:
        super().__init__(cfg, run_dir, train_set, tokenizer, task.model, task=task, collator=collator)
        task.teacher.to(self.device)
        self.extra_state = extra_state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.extra_state}
