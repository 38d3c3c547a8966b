"""One optimizer step on 2 gloo ranks × B equals one single-process step on 2B.

Two CPU processes (``torch.multiprocessing.spawn``, gloo, the same environment variables torchrun
exports) train the ``tiny`` preset through the real :class:`~hybridssl.trainer.Trainer` — per-rank
slices of the step's global batch, DDP (or FSDP), InfoNCE over the gathered global batch — and the
same configuration is trained in this process on the whole batch. Losses, every loss part, the
dynamic weights, the gradients of the last step and the weights after it must agree.

The claim is algebraic (the same sums, split across ranks and added in another order), so both
sides train in float64: their difference is then rounding, ~1e-16 relative, whatever the CPU's
kernels (AVX2, AVX-512, AMX, NEON sum in different orders). In float32 that rounding (~1e-7 of
the gradient) is amplified by AdamW's first steps, update = lr·g/(|g|+ε): for a weight whose
gradient is near ε the update's sensitivity is lr/ε, so a tolerance that holds on one CPU fails
on another. With float64 the weight difference stays below lr·δg/ε ≈ 1e-3·1e-15/1e-8 = 1e-10. Variants cover random masking (MAE, MLM, VAE noise), the MoCo queue with MoCHi mixing,
GradNorm (all-reduced gradient norms), ranks holding different numbers of audio clips, and FSDP.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hybridssl.config import load_config
from hybridssl.data.splits import build_datasets
from hybridssl.runs import build_model
from hybridssl.tokenizer import TextTokenizer, train_tokenizer
from hybridssl.trainer import Trainer

WORLD = 2
BASE = ["data.train_size=32", "train.batch_size=8", "train.ckpt_every=0", "train.warmup_steps=1", "train.threads=1"]
VARIANTS: dict[str, list[str]] = {
    # MAE + MLM masking, the adaptive weighting (difficulty + redundancy statistics), one step
    "adaptive": ["train.steps=1"],
    # VAE noise, MoCo queue + MoCHi mixing (queue non-empty in step 2), GradNorm, partial audio:
    # the ranks hold different numbers of audio clips, so gathers and loss shares are uneven
    "queue-gradnorm-partial": ["train.steps=2", "model.generative=vae", "model.vae_latent=16", "loss.queue_size=16",
                               "loss.hard_negatives=4", "loss.mixed_negatives=3", "loss.query_mixed_negatives=2",
                               "weighting.strategy=gradnorm", "data.train=builtin:missing_audio=0.4"],
    # FSDP (sharded parameters / gradients / optimizer state), DWA weighting, gradient accumulation
    "fsdp-dwa-accum": ["train.steps=2", "train.distributed=fsdp", "weighting.strategy=dwa",
                       "weighting.options={period: 1}", "train.accum_steps=2"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(name: str, root: Path, tokenizer_path: Path) -> Trainer:
    cfg = load_config("tiny", BASE + VARIANTS[name])
    train_set, _ = build_datasets(cfg.data, cfg.train.seed)
    tok = TextTokenizer.from_file(tokenizer_path, cfg.preprocess.text.max_length)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, tok.vocab_size, train_set.modalities)
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run, train_set, tok, model)
    trainer.fit()
    grads = {n: p.grad for n, p in trainer.engine.named_parameters() if p.grad is not None}
    grads = {n.removeprefix("module.").removeprefix("task."): g.full_tensor() if hasattr(g, "full_tensor") else g
             for n, g in grads.items()}
    if trainer.rank == 0:
        save_file({k: v.contiguous() for k, v in grads.items()}, str(run / "grads.safetensors"))
    return trainer


def _worker(rank: int, port: int, root: str, tokenizer_path: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # the algebraic claim, free of float32 rounding (module docstring)
    from hybridssl import dist

    try:
        for name in VARIANTS:
            trainer = _train(name, Path(root) / "dist", Path(tokenizer_path))
            assert trainer.world_size == WORLD
    finally:
        dist.destroy()


def _single_worker(_: int, root: str, tokenizer_path: str) -> None:
    """The single-process reference, in a fresh process too: the pytest process has run hundreds of
    tests (ONNX Runtime, OpenVINO, thread pools) and must not host the comparison."""
    torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared CPU
    torch.set_default_dtype(torch.float64)
    for name in VARIANTS:
        _train(name, Path(root) / "single", Path(tokenizer_path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_equivalence")
    cfg = load_config("tiny", BASE)
    train_set, _ = build_datasets(cfg.data, cfg.train.seed)
    tok = TextTokenizer(train_tokenizer(train_set.captions(), cfg.preprocess.text.vocab_size), cfg.preprocess.text.max_length)
    tok.save(root / "tokenizer.json")
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(root), str(root / "tokenizer.json")), nprocs=WORLD)
    torch.multiprocessing.spawn(_single_worker, args=(str(root), str(root / "tokenizer.json")), nprocs=1)
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# float64 rounding of sums over a few thousand terms, with a wide margin (~1e-16 per operation)
REL, ABS = 1e-9, 1e-12


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol_of, rtol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol_of(b[k]), rtol=rtol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(VARIANTS))
def test_two_ranks_equal_one_process(runs, name):
    dist_run, single = runs / "dist" / name, runs / "single" / name
    md, ms = _metrics(dist_run), _metrics(single)
    assert len(md) == len(ms) == load_config("tiny", BASE + VARIANTS[name]).train.steps
    for d, s in zip(md, ms):
        assert d["world_size"] == 2 and s["world_size"] == 1
        assert d["loss"] == pytest.approx(s["loss"], rel=REL, abs=ABS)
        assert d["parts"].keys() == s["parts"].keys()
        for k in s["parts"]:
            assert d["parts"][k] == pytest.approx(s["parts"][k], rel=REL, abs=ABS), k
        assert d["weights"] == pytest.approx(s["weights"], rel=REL, abs=ABS)
        assert d["signals"]["grad_norm"] == pytest.approx(s["signals"]["grad_norm"], rel=REL)
    grads_d, grads_s = load_file(str(dist_run / "grads.safetensors")), load_file(str(single / "grads.safetensors"))
    assert all(g.dtype == torch.float64 for g in grads_s.values())
    # gradients: rounding relative to the largest gradient of the tensor
    _close(grads_d, grads_s, atol_of=lambda g: REL * float(g.abs().max()), rtol=REL)
    ckpt = f"checkpoints/step_{len(ms):06d}/model.safetensors"
    # weights after the step: at most lr·δg/ε apart (module docstring)
    _close(load_file(str(dist_run / ckpt)), load_file(str(single / ckpt)), atol_of=lambda w: 1e-10, rtol=REL)


# ---------------------------------------------------------------------------------------------- pieces
def test_rank_shares_of_the_gathered_infonce_sum_to_the_global_loss():
    """Rank r's loss over its B_r anchors against the gathered batch, weighted B_r/M, sums (value and
    gradient) to the single-process loss — also with uneven ranks, a queue and a global duplicate mask."""
    import torch.nn.functional as F

    from hybridssl.losses.infonce import GatheredPair, InfoNCELoss, info_nce
    from hybridssl.losses.positives import caption_codes, duplicate_captions

    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    queue = F.normalize(torch.randn(3, 4, generator=g, dtype=torch.float64), dim=1)
    captions = ["a red disc", "A red disc ", "blue", None, "blue"]
    codes = caption_codes(captions)
    mask = (codes[:, None] == codes[None, :]) & (codes >= 0)[:, None] & (codes >= 0)[None, :]
    assert torch.equal(mask, duplicate_captions(captions))
    scale = torch.tensor(3.0, dtype=torch.float64)
    full = info_nce(a, b, scale, queue_b=queue, positive_mask=mask)
    loss = InfoNCELoss(gather_distributed=True)
    total = sum(loss(a[o:o + n], b[o:o + n], scale, gathered=GatheredPair(a, b, o, 2), queue_b=queue,
                     positive_mask=mask[o:o + n]) * n / 5 for o, n in ((0, 2), (2, 3)))
    assert total.item() == pytest.approx(full.item(), abs=1e-12)
    for got, want in zip(torch.autograd.grad(total, (a, b)), torch.autograd.grad(full, (a, b))):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    empty = loss(a[:0], b[:0], scale, gathered=GatheredPair(a, b, 5, 2))
    assert empty.item() == 0.0 and empty.requires_grad  # still connected: the gather's backward runs everywhere
    with pytest.raises(ValueError, match="offset"):
        loss(a[:2], b[:2], scale, gathered=GatheredPair(a, b, 4, 2))


def test_rank_plan_replays_the_draws_of_the_other_ranks():
    from hybridssl.dist import RankPlan

    counts = [{"image": 3, "text": 2, "audio": 0}, {"image": 2, "text": 0, "audio": 1}]
    whole = torch.rand(5, 4, generator=torch.Generator().manual_seed(1))
    rows = []
    for r in (0, 1):
        g = torch.Generator().manual_seed(1)
        plan = RankPlan(r, 2, counts)
        rows.append(plan.replay("image", lambda n, g=g: torch.rand(n, 4, generator=g),
                                lambda r=r, g=g: torch.rand(counts[r]["image"], 4, generator=g)))
        after = torch.rand(21, generator=torch.Generator().manual_seed(1))[20:]
        assert torch.equal(torch.rand(1, generator=g), after)  # every rank leaves the stream where one process does
    assert torch.equal(torch.cat(rows), whole)
    plan = RankPlan(1, 2, counts)
    assert plan.rows("image") == (3, 2, 5) and plan.rows("text") == (2, 0, 2) and plan.total("audio") == 1
    assert plan.replay("text", lambda n: None, lambda: "not called") is None  # no local rows


def test_rank_slices_and_partitions():
    from hybridssl import dist

    batch = list(range(12))
    assert dist.rank_slice(batch, 0, 3) + dist.rank_slice(batch, 1, 3) + dist.rank_slice(batch, 2, 3) == batch
    with pytest.raises(ValueError, match="multiple of the world size"):
        dist.rank_slice(batch, 0, 5)
    parts = [dist.partition(list("abcdefg"), p, 3, seed=4, epoch=1) for p in range(3)]
    assert sorted(sum(parts, [])) == list("abcdefg") and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts != [dist.partition(list("abcdefg"), p, 3, seed=4, epoch=2) for p in range(3)]
    from hybridssl.data.batching import StepBatchSampler

    sampler = StepBatchSampler(20, 8, 0, 3)
    per_rank = [list(dist.RankBatchSampler(sampler, r, 2)) for r in (0, 1)]
    assert [x + y for x, y in zip(*per_rank)] == list(sampler)
    assert dist.world_size() == 1 and dist.gather_with_grad(torch.ones(2, 3))[1] == [2]  # identity without torchrun
