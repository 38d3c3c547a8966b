"""The hybrid task: model + losses + weighting. One call computes every loss term of a batch.

For each modality m in the batch the encoder runs ONCE on the visible tokens (ratio ρ_m):
  * contrastive: e_m = normalise(head(pool(tokens_m))); for every pair (a, b) present on the same
    items, symmetric InfoNCE with the shared learnable temperature (optionally with a MoCo queue of
    momentum-encoder keys and MoCHi hard-negative mixing);
  * generative: the same visible tokens feed the decoder — MAE / VAE reconstruction of the masked
    patches of image and audio, masked-token prediction for text;
  * optional intra-modal NT-Xent between two independently masked views of the image.
The weighting strategy combines the named terms; its weights and the signals it saw are returned.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from hybridssl.config import RunConfig
from hybridssl.losses.hard_negatives import mix_hard_negatives
from hybridssl.losses.infonce import InfoNCELoss
from hybridssl.losses.mae import mae_loss, normalize_patches
from hybridssl.losses.mlm import mask_tokens, masked_token_loss
from hybridssl.losses.ntxent import nt_xent
from hybridssl.losses.queue import MomentumQueue, momentum_update
from hybridssl.losses.temperature import LearnableTemperature
from hybridssl.losses.vae import kl_weight, vae_loss
from hybridssl.models.hybrid import HybridModel
from hybridssl.weighting.signals import feature_redundancy
from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.factory import create_weighting

ORDER = ("image", "text", "audio")


@dataclass
class TextMasking:
    mask_id: int
    vocab_size: int
    special_ids: list[int]


@dataclass
class TaskOutput:
    loss: Tensor
    parts: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)


def resolve_pairs(modalities: tuple[str, ...], requested: tuple[str, ...]) -> list[tuple[str, str]]:
    present = [m for m in ORDER if m in modalities]
    every = list(itertools.combinations(present, 2))
    if not requested:
        return every
    out = []
    for p in requested:
        a, _, b = p.partition("-")
        if (a, b) in every:
            out.append((a, b))
        elif (b, a) in every:
            out.append((b, a))
        else:
            raise ValueError(f"contrastive pair {p!r} needs two of the model's modalities {present}")
    return out


def loss_names(cfg: RunConfig, modalities: tuple[str, ...]) -> list[str]:
    names = []
    if cfg.loss.contrastive:
        names += [f"contrastive/{a}-{b}" for a, b in resolve_pairs(modalities, cfg.loss.pairs)]
    if cfg.model.generative != "none":
        names += [f"{cfg.model.generative}/{m}" for m in ("image", "audio") if m in modalities]
    if cfg.model.text_generative == "mlm" and "text" in modalities:
        names.append("mlm/text")
    if cfg.loss.ntxent_weight > 0 and "image" in modalities:
        names.append("ntxent/image")
    if not names:
        raise ValueError("the configuration enables no loss at all")
    return names


class HybridTask(nn.Module):
    def __init__(self, cfg: RunConfig, model: HybridModel, text: TextMasking | None) -> None:
        super().__init__()
        lc = cfg.loss
        if lc.hard_negatives > 0 and lc.queue_size <= 0:
            raise ValueError("hard-negative mixing (loss.hard_negatives) draws from the MoCo queue: set loss.queue_size > 0")
        self.cfg = cfg
        self.model = model
        self.text = text
        self.pairs = resolve_pairs(model.modalities, lc.pairs) if lc.contrastive else []
        self.names = loss_names(cfg, model.modalities)
        self.temperature = LearnableTemperature(lc.temperature, lc.min_temperature, learnable=lc.learnable_temperature)
        self.infonce = InfoNCELoss()
        self.weighting = create_weighting(cfg.weighting.strategy, self.names, **cfg.weighting.options)
        self.queues = nn.ModuleDict()
        self.momentum_model: HybridModel | None = None
        if lc.queue_size > 0 and self.pairs:
            self.queues = nn.ModuleDict({m: MomentumQueue(lc.queue_size, cfg.model.embed_dim) for m in model.modalities})
            self.momentum_model = copy.deepcopy(model).requires_grad_(False)

    # ----------------------------------------------------------------------------------------
    def forward(self, batch: dict, step: int, generator: torch.Generator | None = None) -> TaskOutput:
        mc = self.cfg.model
        losses: dict[str, Tensor] = {}
        emb: dict[str, Tensor] = {}
        idx: dict[str, Tensor] = {}
        for m in self.model.modalities:
            x, attention, ids_target, selected = self._inputs(batch, m, generator)
            if x is None:
                continue
            ratio = {"image": mc.image_mask_ratio, "audio": mc.audio_mask_ratio}.get(m, 0.0)
            ratio = ratio if (m in self.model.decoders or self.cfg.loss.contrastive) else 0.0
            enc = self.model.encode(m, x, attention=attention, mask_ratio=ratio, generator=generator)
            idx[m] = batch[f"{m}_idx"]
            if self.pairs:
                pooled = enc.pooled
                if self.cfg.loss.two_pass and enc.masking is not None:
                    pooled = self.model.encode(m, x, attention=attention).pooled  # the naive extra full pass
                emb[m] = self.model.forward_head(m, pooled)
            if m in self.model.decoders:
                losses.update(self._generative(m, x, enc, ids_target, selected, step, generator))
            if m == "image" and self.cfg.loss.ntxent_weight > 0:
                view2 = self.model.encode(m, x, mask_ratio=ratio, generator=generator)
                z1, z2 = self.model.heads[m](enc.pooled), self.model.heads[m](view2.pooled)
                losses["ntxent/image"] = nt_xent(z1, z2, self.cfg.loss.ntxent_temperature)
        sizes, redundancy = self._contrastive(batch, emb, idx, losses, generator)
        if not losses:
            raise ValueError("this batch carries no modality the model can learn from")
        parts = {k: float(v.detach()) for k, v in losses.items()}
        if not all(map(torch.isfinite, losses.values())):
            # leave the weighting's state untouched; the trainer skips (and counts) this step
            return TaskOutput(torch.stack(list(losses.values())).sum(), parts, {}, {})
        ctx = WeightingContext(step=step, batch_sizes=sizes, redundancy=redundancy,
                               shared_parameters=self.model.shared_parameters())
        total, weights = self.weighting(losses, ctx)
        signals = {"temperature": self.temperature.temperature}
        if redundancy is not None:
            signals["redundancy"] = redundancy
        return TaskOutput(total, parts, weights, signals)

    def _inputs(self, batch: dict, m: str, generator):
        """The model input of modality m (and the MLM corruption for text), or Nones if absent."""
        if m == "text":
            if "text_ids" not in batch:
                return None, None, None, None
            ids, attn = batch["text_ids"], batch["text_attn"]
            if "text" in self.model.decoders and self.text is not None:
                corrupted, selected = mask_tokens(
                    ids, attn, mask_token_id=self.text.mask_id, vocab_size=self.text.vocab_size,
                    ratio=self.cfg.model.text_mask_ratio, special_ids=self.text.special_ids, generator=generator,
                )
                return corrupted, attn, ids, selected
            return ids, attn, None, None
        return batch.get(m), None, None, None

    def _generative(self, m, x, enc, ids_target, selected, step, generator) -> dict[str, Tensor]:
        dec = self.model.decoders[m]
        if m == "text":
            if selected is None or not bool(selected.any()):
                return {}
            return {"mlm/text": masked_token_loss(dec(enc.tokens), ids_target, selected)}
        if enc.masking is None:
            return {}
        out = dec(enc.tokens, enc.masking.ids_restore, generator)
        target = self.model.patch_target(m, x)                       # (B, N, P)
        if self.cfg.model.norm_pix_loss:
            target = normalize_patches(target)
        if self.cfg.model.generative == "vae":
            # per-value ELBO: the reconstruction is a mean over the masked values, so the KL (a sum over
            # the latents of a sample) is divided by the number of values each sample reconstructs
            n_values = float(enc.masking.mask[0].sum()) * target.shape[-1]
            beta = kl_weight(step, self.cfg.loss.kl_warmup_steps, self.cfg.loss.kl_beta) / n_values
            total, _, _ = vae_loss(out.pred, target, out.mu, out.logvar, beta, mask=enc.masking.mask)
            return {f"vae/{m}": total}
        return {f"mae/{m}": mae_loss(out.pred, target, enc.masking.mask)}

    def _contrastive(self, batch, emb, idx, losses, generator) -> tuple[dict[str, int], float | None]:
        sizes: dict[str, int] = {}
        redundancy: list[float] = []
        scale = self.temperature()
        keys = self._momentum_keys(batch) if self.momentum_model is not None else {}
        for a, b in self.pairs:
            if a not in emb or b not in emb:
                continue
            ia, ib = _common(idx[a], idx[b])
            if ia.numel() < 2:
                continue
            ea, eb = emb[a][ia], emb[b][ib]
            kw = {}
            if self.queues:
                qa, qb = self.queues[a].negatives(), self.queues[b].negatives()
                kw = {"queue_a": qa, "queue_b": qb}
                if self.cfg.loss.hard_negatives > 0 and qa.shape[0] > 0:
                    mix = dict(n_hard=self.cfg.loss.hard_negatives, n_mix=self.cfg.loss.mixed_negatives,
                               n_query_mix=self.cfg.loss.query_mixed_negatives, generator=generator)
                    kw["extra_negatives_ab"] = mix_hard_negatives(ea.detach(), qb, **mix)
                    kw["extra_negatives_ba"] = mix_hard_negatives(eb.detach(), qa, **mix)
            if "text" in (a, b):
                caps = [batch["captions"][i] for i in idx[a][ia].tolist()]
                kw["positive_mask"] = _duplicates(caps)
            name = f"contrastive/{a}-{b}"
            losses[name] = self.infonce(ea, eb, scale, **kw)
            sizes[name] = ea.shape[0] + (kw["queue_b"].shape[0] if "queue_b" in kw else 0)
            redundancy.append(float(feature_redundancy(ea.detach(), eb.detach())))
        for m, k in keys.items():
            self.queues[m].enqueue(k)
        return sizes, (sum(redundancy) / len(redundancy) if redundancy else None)

    @torch.no_grad()
    def _momentum_keys(self, batch) -> dict[str, Tensor]:
        out = {}
        for m in self.model.modalities:
            if m == "text" and "text_ids" in batch:
                out[m] = self.momentum_model.embed(m, batch["text_ids"], batch["text_attn"])
            elif m != "text" and m in batch:
                out[m] = self.momentum_model.embed(m, batch[m])
        return out

    def after_optimizer_step(self) -> None:
        if self.momentum_model is not None:
            momentum_update(self.momentum_model, self.model, self.cfg.loss.momentum)


def _common(ia: Tensor, ib: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of a and of b that belong to the same batch items, in the same order."""
    pos_b = {int(v): j for j, v in enumerate(ib.tolist())}
    pa, pb = [], []
    for i, v in enumerate(ia.tolist()):
        if v in pos_b:
            pa.append(i)
            pb.append(pos_b[v])
    return torch.tensor(pa, dtype=torch.long), torch.tensor(pb, dtype=torch.long)


def _duplicates(captions: list[str | None]) -> Tensor:
    """(B, B) bool: True where two items carry the identical caption (not penalised as negatives)."""
    norm = [(c or "").strip().lower() for c in captions]
    ids = {c: i for i, c in enumerate(dict.fromkeys(norm))}
    code = torch.tensor([ids[c] for c in norm])                       # (B,) one id per distinct caption
    present = torch.tensor([c != "" for c in norm])
    return (code[:, None] == code[None, :]) & present[:, None] & present[None, :]
