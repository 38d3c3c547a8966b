"""The hybrid task: model + losses + weighting. One call computes every loss term of a batch.

For each modality m in the batch the encoder runs ONCE on the visible tokens (ratio ρ_m):
  * contrastive: e_m = normalise(head(pool(tokens_m))); for every pair (a, b) present on the same
    items, symmetric InfoNCE with the shared learnable temperature (optionally with a MoCo queue of
    momentum-encoder keys and MoCHi hard-negative mixing);
  * generative: the same visible tokens feed the decoder — MAE / VAE reconstruction of the masked
    patches of image and audio, masked-token prediction for text, masked-frame regression for each
    feature sequence (:mod:`hybridssl.losses.mfm`; its masked tokens are [MASK]-replaced in place);
  * optional intra-modal NT-Xent (SimCLR), times its weight: ``ntxent/image`` between two views of
    each image (two maskings, or with ``loss.ntxent_view=colour`` the second one colour-permuted so
    the pair agrees on everything but colour, :func:`permute_colours`), and ``ntxent/text`` between
    the MLM corruption (or the caption) and a second masking or another caption of the item
    (:func:`second_text_view`): the text embedding tells captions apart on its own and, from
    paraphrases, ignores their wording (``loss.paraphrase_target``: the pairs then see the mean of
    both wordings' embeddings). Single-process exact; under torchrun the text views are drawn per rank.
  * optional caption-word prediction ``words/<m>`` (``loss.caption_words_weight``): every embedding
    predicts its item's caption words through one shared head (:mod:`hybridssl.losses.caption_words`);
  * optional sub-caption contrast ``subcaption/<m>`` (``loss.subcaption_weight``): every non-text
    embedding is also matched to a random short span of its caption (:mod:`hybridssl.losses.subcaptions`);
  * the redundancy signal of the weighting is the mean feature redundancy of the modality pairs; on
    data without a pair (one modality) it is that of the two NT-Xent views of each image, so the
    dynamic weighting still has a signal to act on;
  * optional hard-negative re-weighting of every InfoNCE denominator (``loss.hard_negative_beta``,
    :func:`hybridssl.losses.infonce.hard_negative_logits`).
The weighting strategy combines the named terms; its weights and the signals it saw are returned.

Under torchrun (world size W > 1, see :mod:`hybridssl.dist`) one step on W ranks × B equals one
single-process step on W·B:
  * randomness is rank-consistent: every rank advances the shared step generator exactly as the
    single process does — a rank replays (draws and discards) the masking / VAE noise of the rows
    the other ranks own, MLM corruption and MoCHi mixing run on the gathered global ids / queries
    and each rank keeps its own rows — so every sample gets the mask it would get in one process;
  * ``loss.gather=global``: each rank scores its anchors against the gathered embeddings of the
    whole batch (gradients flow back through the gather), with the duplicate-caption mask of the
    global batch; ``local``: against its own rows only;
  * every term is a mean over n_r units on rank r (anchors, masked patches, selected tokens,
    samples); the rank's term is scaled by W·n_r/N (N = Σ_r n_r) so that DDP's gradient average is
    the gradient of the global mean, and its VALUE is replaced by the global mean Σ_r n_r L_r / N
    (one all-reduce), so the weighting sees the same statistics — and gives the same weights — on
    every rank; candidate counts and redundancy are global too;
  * the MoCo queues enqueue the gathered keys, so they stay identical.
Exceptions, documented: NT-Xent stays per-rank; VAE noise is only bit-identical when
n_keep·vae_latent is a multiple of 16 (torch's CPU normal sampler works in blocks of 16).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from edge_runtime.modalities import is_sequence
from hybridssl import dist
from hybridssl.augment import permute_colours
from hybridssl.config import RunConfig
from hybridssl.data.batching import model_inputs
from hybridssl.dist import RankPlan
from hybridssl.losses.caption_words import CaptionWords, caption_word_losses
from hybridssl.losses.global_mean import globalise
from hybridssl.losses.hard_negatives import add_caption_negatives, embed_caption_negatives, mix_hard_negatives
from hybridssl.losses.infonce import InfoNCELoss
from hybridssl.losses.mae import mae_loss, normalize_patches
from hybridssl.losses.mfm import count_masked_frames, frame_targets, masked_frame_loss
from hybridssl.losses.mlm import TextMasking, mask_tokens, masked_token_loss
from hybridssl.losses.ntxent import nt_xent, second_text_view
from hybridssl.losses.plan import loss_names, resolve_pairs
from hybridssl.losses.positives import caption_positive_mask, common_rows
from hybridssl.losses.queue import MomentumQueue, momentum_update
from hybridssl.losses.subcaptions import subcaption_terms
from hybridssl.losses.temperature import LearnableTemperature
from hybridssl.losses.vae import kl_weight, vae_loss
from hybridssl.models.hybrid import Encoded, HybridModel
from hybridssl.models.masking import random_masking
from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.factory import create_weighting
from hybridssl.weighting.signals import feature_redundancy

GATHER_MODES = ("global", "local")
@dataclass
class TaskOutput:
    loss: Tensor
    parts: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)


class HybridTask(nn.Module):
    def __init__(self, cfg: RunConfig, model: HybridModel, text: TextMasking | None) -> None:
        super().__init__()
        lc = cfg.loss
        if lc.hard_negatives > 0 and lc.queue_size <= 0:
            raise ValueError("hard-negative mixing (loss.hard_negatives) draws from the MoCo queue: set loss.queue_size > 0")
        if lc.gather not in GATHER_MODES:
            raise ValueError(f"loss.gather must be one of {GATHER_MODES}, got {lc.gather!r}")
        self.cfg = cfg
        self.model = model
        self.text = text
        self.pairs = resolve_pairs(model.modalities, lc.pairs) if lc.contrastive else []
        self.names = loss_names(cfg, model.modalities)
        self.temperature = LearnableTemperature(lc.temperature, lc.min_temperature, learnable=lc.learnable_temperature)
        self.infonce = InfoNCELoss(gather_distributed=lc.gather == "global", hard_negative_beta=lc.hard_negative_beta)
        self.weighting = create_weighting(cfg.weighting.strategy, self.names, **cfg.weighting.options)
        self.queues = nn.ModuleDict()
        self.momentum_model: HybridModel | None = None
        if lc.queue_size > 0 and self.pairs:
            self.queues = nn.ModuleDict({m: MomentumQueue(lc.queue_size, cfg.model.embed_dim, gather_distributed=True)
                                         for m in model.modalities})
            self.momentum_model = copy.deepcopy(model).requires_grad_(False)
        dims = {m: model.feature_dim(m) for m in model.modalities} if lc.caption_words_on == "features" else None
        self.words = CaptionWords(cfg.model.embed_dim, text.vocab_size, text.special_ids, lc.caption_words_temperature,
                                  dims) if lc.caption_words_weight > 0 and text is not None and "text" in model.modalities else None

    # ----------------------------------------------------------------------------------------
    def forward(self, batch: dict, step: int, generator: torch.Generator | None = None) -> TaskOutput:
        mc = self.cfg.model
        plan = RankPlan.gather(batch, self._device()) if dist.is_distributed() else None
        losses: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        emb: dict[str, Tensor] = {}
        feats: dict[str, Tensor] = {}   # pooled features, for the caption-word heads on features
        idx: dict[str, Tensor] = {}
        view_redundancy: list[float] = []   # of the NT-Xent views: the signal when there is no modality pair
        for m in self.model.modalities:
            x, attention, ids_target, selected = self._inputs(batch, m, generator, plan)
            if x is None and (plan is None or not plan.total(m)):
                continue
            ratio = {"image": mc.image_mask_ratio, "audio": mc.audio_mask_ratio}.get(m, 0.0)
            ratio = mc.sequence_mask_ratio if is_sequence(m) else ratio
            ratio = ratio if (m in self.model.decoders or self.cfg.loss.contrastive) else 0.0
            enc = self._encode(m, x, attention, ratio, generator, plan)
            if enc is not None:
                idx[m] = batch[f"{m}_idx"]
                if self.pairs or self.words is not None or self.cfg.loss.subcaption_weight > 0:
                    pooled = enc.pooled
                    if self.cfg.loss.two_pass and enc.masking is not None:
                        pooled = self.model.encode(m, x, attention=attention).pooled  # the naive extra full pass
                    emb[m] = self.model.forward_head(m, pooled)
                    feats[m] = pooled
            if m in self.model.decoders:
                self._generative(m, x, attention, enc, ids_target, selected, step, generator, plan, losses, counts)
            if m == "image" and self.cfg.loss.ntxent_weight > 0:
                x2 = permute_colours(x, self.cfg.preprocess.image, generator) if self.cfg.loss.ntxent_view == "colour" else x
                view2 = self._encode(m, x2, None, ratio, generator, plan)
                if enc is not None and view2 is not None:
                    z1, z2 = self.model.heads[m](enc.pooled), self.model.heads[m](view2.pooled)  # (B, E) each
                    losses["ntxent/image"] = self.cfg.loss.ntxent_weight * nt_xent(z1, z2, self.cfg.loss.ntxent_temperature)
                    counts["ntxent/image"] = x.shape[0]
                    if not self.pairs and z1.shape[0] >= 2:
                        view_redundancy.append(float(feature_redundancy(z1.detach(), z2.detach())))
            if m == "text" and "ntxent/text" in self.names and enc is not None and self.text is not None:
                clean = ids_target if ids_target is not None else x  # view 1: the MLM corruption, or the caption
                corrupted, _ = self._mask_tokens(clean, attention, generator, self.cfg.loss.text_ntxent_mask_ratio)
                ids2, attn2 = second_text_view(batch, corrupted, attention, self.cfg.loss.text_ntxent_view)
                view2 = self.model.encode(m, ids2, attention=attn2)  # the caption rows are local, as enc's are
                z1, z2 = self.model.heads[m](enc.pooled), self.model.heads[m](view2.pooled)
                if self.cfg.loss.paraphrase_target and m in emb:   # the pairs' text side: mean of the two wordings
                    emb[m] = nn.functional.normalize(emb[m] + nn.functional.normalize(z2, dim=-1), dim=-1)
                losses["ntxent/text"] = self.cfg.loss.text_ntxent_weight * nt_xent(z1, z2, self.cfg.loss.ntxent_temperature)
                counts["ntxent/text"] = clean.shape[0]
        pair_sizes, redundancies = self._contrastive(batch, emb, idx, losses, counts, generator, plan)
        lc = self.cfg.loss
        word_inputs = feats if lc.caption_words_on == "features" else emb
        extra = [caption_word_losses(self.words, batch, word_inputs, idx, lc.caption_words_weight)] \
            if self.words is not None else []
        if lc.subcaption_weight > 0 and self.text is not None:
            extra.append(subcaption_terms(self.model, self.text, batch, emb, idx, self.temperature(),
                                          lc.subcaption_weight, lc.subcaption_tokens, generator))
        for more_losses, more_counts in extra:
            losses, counts = losses | more_losses, counts | more_counts
        redundancies = redundancies or view_redundancy
        sizes: dict[str, int]
        if plan is not None:
            losses, sizes, redundancy = globalise(self.names, losses, counts, pair_sizes, redundancies, plan, self._device())
        else:
            redundancy = sum(redundancies) / len(redundancies) if redundancies else None
            sizes = {k: n + q for k, (n, q) in pair_sizes.items()}
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

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, batch: dict, m: str, generator, plan: RankPlan | None):
        """The model input of modality m (and the MLM corruption for text), or Nones if absent."""
        if m == "text":
            mlm = "text" in self.model.decoders and self.text is not None
            if plan is not None and mlm and plan.total("text"):
                return self._global_text_masking(batch, generator, plan)
            if "text_ids" not in batch:
                return None, None, None, None
            ids, attn = batch["text_ids"], batch["text_attn"]
            if mlm:
                corrupted, selected = self._mask_tokens(ids, attn, generator)
                return corrupted, attn, ids, selected
            return ids, attn, None, None
        x, attention = model_inputs(batch, m) or (None, None)
        return x, attention, None, None

    def _mask_tokens(self, ids: Tensor, attn: Tensor, generator, ratio: float | None = None) -> tuple[Tensor, Tensor]:
        if self.text is None:
            raise ValueError("masking text tokens needs the tokenizer's TextMasking")
        return mask_tokens(ids, attn, mask_token_id=self.text.mask_id, vocab_size=self.text.vocab_size,
                           ratio=self.cfg.model.text_mask_ratio if ratio is None else ratio,
                           special_ids=self.text.special_ids, generator=generator)

    def _global_text_masking(self, batch: dict, generator, plan: RankPlan):
        """MLM corruption drawn for the gathered ids of every rank (as one process would), own rows kept."""
        length = self.model.text_stem().max_length
        ids = batch.get("text_ids", torch.zeros(0, length, dtype=torch.long, device=self._device()))
        attn = batch.get("text_attn", torch.zeros(0, length, dtype=torch.bool, device=ids.device))
        g_ids, g_attn = dist.gather_rows(ids), dist.gather_rows(attn.long()).bool()   # (Bt_all, L)
        corrupted, selected = self._mask_tokens(g_ids, g_attn, generator)
        before, local, _ = plan.rows("text")
        if not local:
            return None, None, None, None
        rows = slice(before, before + local)
        return corrupted[rows], attn, ids, selected[rows]

    def _encode(self, m: str, x: Tensor | None, attention: Tensor | None, ratio: float, generator,
                plan: RankPlan | None) -> Encoded | None:
        """``model.encode`` of the local rows (None without any); under torchrun the masking noise of
        the other ranks' rows is replayed so the shared generator stays in step."""
        run = (lambda: self.model.encode(m, x, attention=attention, mask_ratio=ratio, generator=generator)) \
            if x is not None else None
        if plan is None or m == "text" or ratio <= 0:
            return run() if run is not None else None
        n_tokens = self.model.encoder(m).stem.num_tokens
        return plan.replay(m, lambda n: torch.rand(n, n_tokens, generator=generator), run)

    def _decode(self, m: str, enc: Encoded | None, ratio_tokens: int, generator, plan: RankPlan | None):
        """The patch decoder on the local rows, replaying the other ranks' VAE noise under torchrun."""
        dec = self.model.decoder(m)
        run = None
        if enc is not None:   # unmasked (a VAE on every patch): the identity order
            tokens = enc.tokens
            restore = enc.masking.ids_restore if enc.masking is not None else \
                torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
            run = lambda: dec(tokens, restore, generator)  # noqa: E731
        if plan is None or not (dec.vae_latent > 0 and dec.training):
            return run() if run is not None else None
        shape = (ratio_tokens, dec.vae_latent)
        return plan.replay(m, lambda n: torch.randn(n, *shape, generator=generator), run)

    def _generative(self, m, x, attention, enc, ids_target, selected, step, generator, plan, losses, counts) -> None:
        dec = self.model.decoders[m]
        if m == "text":
            if selected is None or not bool(selected.any()):
                return
            losses["mlm/text"] = masked_token_loss(dec(enc.tokens), ids_target, selected)
            counts["mlm/text"] = int(selected.sum())
            return
        if is_sequence(m):
            if enc is None or enc.masked is None or not bool(enc.masked.any()):
                return
            target, valid = frame_targets(x, attention, self.model.sequence_stem(m).patch)
            losses[f"mfm/{m}"] = masked_frame_loss(dec(enc.tokens), target, enc.masked, valid)
            counts[f"mfm/{m}"] = count_masked_frames(enc.masked, valid)
            return
        ratio = {"image": self.cfg.model.image_mask_ratio, "audio": self.cfg.model.audio_mask_ratio}[m]
        vae = self.cfg.model.generative == "vae"   # a VAE reconstructs every patch of an unmasked pass
        if (ratio <= 0 and not vae) or (ratio > 0 and enc is not None and enc.masking is None):
            return
        n_tokens = self.model.patch_stem(m).num_tokens
        n_keep = random_masking(0, n_tokens, ratio).ids_keep.shape[1]  # draws nothing for 0 rows
        out = self._decode(m, enc, n_keep, generator, plan)
        if out is None:
            return
        target = self.model.patch_target(m, x)                       # (B, N, P)
        if self.cfg.model.norm_pix_loss:
            target = normalize_patches(target)
        if vae:
            # per-value ELBO: the reconstruction is a mean over the masked values (every value without
            # masking), so the KL (a sum over the latents of a sample) is divided by the values per sample
            mask = enc.masking.mask if enc.masking is not None else None
            n_values = float(mask[0].sum() if mask is not None else target.shape[1]) * target.shape[-1]
            beta = kl_weight(step, self.cfg.loss.kl_warmup_steps, self.cfg.loss.kl_beta) / n_values
            total, _, _ = vae_loss(out.pred, target, out.mu, out.logvar, beta, mask=mask)
            losses[f"vae/{m}"], counts[f"vae/{m}"] = total, x.shape[0]
            return
        losses[f"mae/{m}"] = mae_loss(out.pred, target, enc.masking.mask)
        counts[f"mae/{m}"] = int(enc.masking.mask.sum())

    # ------------------------------------------------------------------------------ contrastive
    def _contrastive(self, batch, emb, idx, losses, counts, generator,
                     plan: RankPlan | None) -> tuple[dict[str, tuple[int, int]], list[float]]:
        """InfoNCE of every pair; returns {name: (in-batch candidates, queue length)} and redundancies."""
        sizes: dict[str, tuple[int, int]] = {}
        redundancy: list[float] = []
        scale = self.temperature()
        keys = self._momentum_keys(batch) if self.momentum_model is not None else {}
        mlm = self.cfg.model.text_generative == "mlm" and self.text is not None
        caption_neg = embed_caption_negatives(self.model, batch, self._mask_tokens if mlm else None, generator) \
            if "text_neg_ids" in batch else None
        for a, b in self.pairs:
            rows = self._pair_rows(a, b, emb, idx, plan)
            if rows is None:
                continue
            ea, eb, items = rows
            g = self.infonce.gather(ea, eb) if plan is not None else None
            n_cand = g.a_all.shape[0] if g is not None else ea.shape[0]
            name = f"contrastive/{a}-{b}"
            queue_len = int(self.queue(b).filled) if self.queues else 0
            if plan is not None and g is None:
                sizes[name] = (0, queue_len)  # local mode: the in-batch count is set once N is known
            if n_cand < 2 or (g is None and ea.shape[0] < 2):
                continue
            kw = self._negatives(a, b, ea, eb, g, generator)
            if caption_neg is not None and "text" in (a, b) and ea.shape[0]:
                add_caption_negatives(kw, a, b, items, idx["text"], caption_neg)
            if "text" in (a, b):
                kw["positive_mask"] = caption_positive_mask([batch["captions"][i] for i in items.tolist()], g, ea.device)
            losses[name] = self.infonce(ea, eb, scale, gathered=g, **kw)
            counts[name] = ea.shape[0]
            sizes[name] = (n_cand, queue_len)
            za, zb = (g.a_all, g.b_all) if g is not None else (ea, eb)
            if za.shape[0] >= 2:
                redundancy.append(float(feature_redundancy(za.detach(), zb.detach())))
        self._enqueue(keys, plan)
        return sizes, redundancy

    def _pair_rows(self, a: str, b: str, emb: dict, idx: dict, plan: RankPlan | None):
        """(ea, eb, batch items) of the items carrying both a and b; None when the pair is absent.

        Under torchrun a pair is active when both modalities exist on SOME rank; a rank without rows
        contributes empty tensors that still take part in the gathers (and their backward)."""
        if plan is None:
            if a not in emb or b not in emb:
                return None
        elif not (plan.total(a) and plan.total(b)):
            return None
        if a in emb and b in emb:
            ia, ib = common_rows(idx[a], idx[b])
            return emb[a][ia], emb[b][ib], idx[a][ia]
        dim = self.cfg.model.embed_dim
        empty = {m: emb[m][:0] if m in emb else torch.zeros(0, dim, device=self._device(), requires_grad=True)
                 for m in (a, b)}
        return empty[a], empty[b], torch.zeros(0, dtype=torch.long)

    def _negatives(self, a: str, b: str, ea: Tensor, eb: Tensor, g, generator) -> dict[str, Tensor]:
        """Queue negatives and MoCHi mixes; with a gathered pair the mixes are drawn for the global
        queries (as one process would) and this rank keeps its rows."""
        if not self.queues:
            return {}
        qa, qb = self.queue(a).negatives(), self.queue(b).negatives()
        kw = {"queue_a": qa, "queue_b": qb}
        if self.cfg.loss.hard_negatives > 0 and qa.shape[0] > 0:
            mix = dict(n_hard=self.cfg.loss.hard_negatives, n_mix=self.cfg.loss.mixed_negatives,
                       n_query_mix=self.cfg.loss.query_mixed_negatives, generator=generator)
            qry_a, qry_b, rows = ea.detach(), eb.detach(), slice(None)
            if g is not None:
                qry_a, qry_b, rows = g.a_all.detach(), g.b_all.detach(), slice(g.offset, g.offset + ea.shape[0])
            kw["extra_negatives_ab"] = mix_hard_negatives(qry_a, qb, **mix)[rows]
            kw["extra_negatives_ba"] = mix_hard_negatives(qry_b, qa, **mix)[rows]
        return kw

    def _enqueue(self, keys: dict[str, Tensor], plan: RankPlan | None) -> None:
        if plan is None:
            for m, k in keys.items():
                self.queue(m).enqueue(k)
            return
        for m in self.queues:  # every rank enqueues (gathered keys) for every modality some rank holds
            if plan.total(m):
                empty = torch.zeros(0, self.cfg.model.embed_dim, device=self._device())
                self.queue(m).enqueue(keys.get(m, empty))

    def queue(self, modality: str) -> MomentumQueue:
        return cast(MomentumQueue, self.queues[modality])

    @torch.no_grad()
    def _momentum_keys(self, batch) -> dict[str, Tensor]:
        assert self.momentum_model is not None
        out = {}
        for m in self.model.modalities:
            inputs = model_inputs(batch, m)
            if inputs is not None:
                out[m] = self.momentum_model.embed(m, *inputs)
        return out

    def after_optimizer_step(self) -> None:
        if self.momentum_model is not None:
            momentum_update(self.momentum_model, self.model, self.cfg.loss.momentum)


