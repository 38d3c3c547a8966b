"""Load any run directory — a hybridssl teacher or a distilled student — behind one function.

Both kinds of run share the layout of :mod:`hybridssl.checkpoint` (``checkpoints/step_*/`` with
safetensors weights and a JSON state). The state's ``model_kind`` says which model to rebuild:
``"hybrid"`` (the default, for runs written before students existed) or ``"student"``.
Whatever comes back is a :class:`hybridssl.run.LoadedRun` whose ``model`` offers the tower
interface (``modalities``, ``forward_features``, ``forward_head``, ``embed``, ``feature_dim``,
``tower_parameters``), so evaluation and export treat both kinds alike.

A student's state holds ``student`` (:class:`distill.students.StudentSpec`), ``distill`` (the
distillation config), ``teacher`` (provenance) and ``config``: the teacher's resolved run config
with the student's preprocessing spec, so ``LoadedRun.spec`` is what the student reads.
"""

from __future__ import annotations

from pathlib import Path

from hybridssl.checkpoint import latest_checkpoint, load_checkpoint, read_state
from hybridssl.config import RunConfig
from hybridssl.run import LoadedRun, load_run

MODEL_KINDS = ("hybrid", "student")


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
    """``"hybrid"`` or ``"student"``, read from the checkpoint's JSON state (no weights loaded)."""
    return str(read_state(checkpoint_folder(run_dir, checkpoint)).get("model_kind", "hybrid"))


def load_student_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "cpu") -> LoadedRun:
    """Rebuild a distilled student (safetensors + JSON only, never pickle), in eval mode on ``device``."""
    from distill.students import StudentSpec, build_student_model
    from hybridssl.tokenizer import TextTokenizer

    folder = checkpoint_folder(run_dir, checkpoint)
    ck = load_checkpoint(folder)
    state = ck["state"]
    if "student" not in state:
        raise ValueError(f"checkpoint {folder} says model_kind 'student' but holds no student spec")
    cfg = RunConfig.from_dict(state["config"])
    tokenizer = None
    if "tokenizer_json" in ck:
        from tokenizers import Tokenizer

        tokenizer = TextTokenizer(Tokenizer.from_str(ck["tokenizer_json"]), cfg.preprocess.text.max_length)
    model = build_student_model(StudentSpec.from_dict(state["student"]), cfg.preprocess)
    weights = {k[len("model."):]: v for k, v in ck["model"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not match its student spec: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.to(device).eval()
    return LoadedRun(Path(run_dir), cfg, model, tokenizer, state)


def load_any_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of a teacher or student run directory, in eval mode on ``device``."""
    kind = run_kind(run_dir, checkpoint)
    if kind == "hybrid":
        return load_run(Path(run_dir), checkpoint, device=device)
    if kind == "student":
        return load_student_run(run_dir, checkpoint, device=device)
    raise ValueError(f"{run_dir}: unknown model_kind {kind!r} (expected {' or '.join(map(repr, MODEL_KINDS))})")
