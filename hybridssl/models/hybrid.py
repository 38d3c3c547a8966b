"""The hybrid multimodal model: per-modality encoders, an optional shared trunk, projection heads
into one L2-normalised joint space, and the generative decoders that read the same tokens.

``encode(m, x, mask_ratio=ρ)`` runs the encoder once on the visible tokens; its output serves
both branches (FLIP, Li et al. 2023): ``pooled`` → ``project`` → contrastive embedding, and
``tokens`` + ``masking`` → decoder → reconstruction. With ρ = 0 (inference / export),
``embed(m, x) = forward_head(m, forward_features(m, x))``.

Pooling (``model.pool``): mean or max over the visible (image/audio) or real (text, attention mask)
tokens after the final LayerNorm. Max pooling lets a small object dominate its embedding; a mean over
64 tokens dilutes it into the background (shape: 16 % → 97 % with the CNN stem, supervised, see
``benchmarks/ceiling.py``). Projection: Linear(W, E, no bias) then L2 normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.modalities import is_modality, is_sequence, ordered_modalities, sequence_stream
from hybridssl.config import ModelConfig
from hybridssl.models.blocks import make_blocks
from hybridssl.models.decoders import MaskedFrameHead, MaskedPatchDecoder, MaskedTokenHead
from hybridssl.models.encoders import STEMS, ModalityEncoder, PatchStem, SequenceStem, TextStem
from hybridssl.models.masking import Masking, frame_token_masking, gather_tokens, random_masking
from hybridssl.preprocessing import PreprocessSpec

PATCH_MODALITIES = ("image", "audio")
POOLS = ("mean", "max")


@dataclass
class Encoded:
    tokens: Tensor                 # (B, K, W) visible tokens after the final norm
    pooled: Tensor                 # (B, W)
    masking: Masking | None = None
    masked: Tensor | None = None   # feature sequences: (B, N) bool, the tokens replaced by [MASK]
    real: Tensor | None = None     # feature sequences: (B, N) bool, the tokens holding a real frame


class HybridModel(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: PreprocessSpec, vocab_size: int) -> None:
        super().__init__()
        if not cfg.modalities or not all(map(is_modality, cfg.modalities)):
            raise ValueError(f"modalities must be a non-empty subset of image, text, audio, seq_<stream>; "
                             f"got {cfg.modalities}")
        if not 0 <= cfg.shared_depth <= cfg.depth:
            raise ValueError("shared_depth must be between 0 and depth")
        if cfg.generative not in ("mae", "vae", "none") or cfg.text_generative not in ("mlm", "none"):
            raise ValueError("generative must be mae|vae|none and text_generative mlm|none")
        self.cfg = cfg
        self.modalities = ordered_modalities(cfg.modalities)
        unknown_towers = sorted(m for m in cfg.towers if not is_modality(m))
        if unknown_towers:
            raise ValueError(f"model.towers names unknown modalities {unknown_towers}; valid: audio, image, text, "
                             f"seq_<stream>")
        towers = {m: cfg.tower(m) for m in self.modalities}            # m → (width, depth, heads)
        self.widths = {m: t[0] for m, t in towers.items()}
        if cfg.shared_depth and len({*self.widths.values(), cfg.width}) > 1:
            raise ValueError(f"a shared trunk needs every tower at width {cfg.width}; got {self.widths}")
        if any(cfg.shared_depth > t[1] for t in towers.values()):
            raise ValueError("shared_depth must not exceed any tower's depth")
        stems: dict[str, PatchStem | TextStem | SequenceStem] = {}
        if "image" in self.modalities:
            s = spec.image.size
            if cfg.image_stem not in STEMS:
                raise ValueError(f"image_stem must be one of {tuple(STEMS)}, got {cfg.image_stem!r}")
            stems["image"] = PatchStem(3, (s, s), (cfg.image_patch, cfg.image_patch), self.widths["image"],
                                       kind=cfg.image_stem)
        if cfg.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {cfg.pool!r}")
        if "audio" in self.modalities:
            stems["audio"] = PatchStem(1, (spec.audio.n_mels, spec.audio.num_frames), (cfg.audio_patch[0], cfg.audio_patch[1]),
                                       self.widths["audio"])
        if "text" in self.modalities:
            stems["text"] = TextStem(vocab_size, spec.text.max_length, self.widths["text"])
        for m in filter(is_sequence, self.modalities):
            stream = sequence_stream(m)
            if stream not in spec.sequences:
                raise ValueError(f"the preprocessing spec has no entry for the feature stream {stream!r} "
                                 f"(it is fitted from the training data; has {sorted(spec.sequences)})")
            seq = spec.sequences[stream]
            stems[m] = SequenceStem(seq.dim, seq.patch, seq.max_tokens, self.widths[m])
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(stems[m], w, d - cfg.shared_depth, h, cfg.mlp_ratio, cfg.drop_path)
            for m, (w, d, h) in towers.items()
        })
        self.trunk = make_blocks(cfg.width, cfg.shared_depth, cfg.heads, cfg.mlp_ratio, cfg.drop_path)
        self.modality_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(1, 1, cfg.width)) for m in self.modalities} if cfg.shared_depth else {}
        )
        self.norms = nn.ModuleDict({m: nn.LayerNorm(self.widths[m]) for m in self.modalities})
        self.heads = nn.ModuleDict({m: nn.Linear(self.widths[m], cfg.embed_dim, bias=False) for m in self.modalities})
        self.decoders = nn.ModuleDict()
        if cfg.generative != "none":
            for m in PATCH_MODALITIES:
                if m in self.modalities:
                    stem = stems[m]
                    assert isinstance(stem, PatchStem)
                    patch_dim = stem.in_chans * stem.patch[0] * stem.patch[1]
                    self.decoders[m] = MaskedPatchDecoder(
                        self.widths[m], cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads, stem.num_tokens,
                        patch_dim, vae_latent=cfg.vae_latent if cfg.generative == "vae" else 0,
                    )
        if cfg.text_generative == "mlm" and "text" in self.modalities:
            self.decoders["text"] = MaskedTokenHead(self.widths["text"], vocab_size)
        if cfg.generative != "none":
            for m in filter(is_sequence, self.modalities):
                stem = stems[m]
                assert isinstance(stem, SequenceStem)
                self.decoders[m] = MaskedFrameHead(self.widths[m], stem.patch * stem.dim)
        self.apply(_init_weights)

    # ------------------------------------------------------------------ encoding
    def encode(self, modality: str, x: Tensor, *, attention: Tensor | None = None, mask_ratio: float = 0.0,
               generator: torch.Generator | None = None) -> Encoded:
        """Encode once. x: image (B,3,S,S) | audio (B,1,M,T) | text ids (B,L) with attention (B,L) bool |
        feature frames (B,T,D) with attention = the frame mask (B,T) bool."""
        if modality not in self.encoders:
            raise ValueError(f"this model has no {modality!r} encoder (it has {', '.join(self.modalities)})")
        enc = self.encoder(modality)
        masking = masked = real = None
        attn_mask = pool_mask = None
        if modality == "text":
            if attention is None:
                raise ValueError("text needs its attention mask")
            attn_mask, pool_mask = attention[:, None, None, :], attention  # (B, 1, 1, L), (B, L)
            tokens = enc.stem(x)                                # (B, L, W)
        elif isinstance(enc.stem, SequenceStem):
            if attention is None:
                raise ValueError(f"{modality} needs its frame mask")
            real = enc.stem.token_mask(attention)               # (B, N)
            if mask_ratio > 0:
                masked = frame_token_masking(real, mask_ratio, enc.stem.max_tokens, generator)
            tokens = enc.stem(x, masked)                        # (B, N, W)
            attn_mask, pool_mask = real[:, None, None, :], real
        elif mask_ratio > 0:
            stem = self.patch_stem(modality)
            masking = random_masking(x.shape[0], stem.num_tokens, mask_ratio, x.device, generator)
            if stem.overlapping:                                # convolutions would see the masked patches
                x = stem.mask_input(x, masking.mask)
            tokens = gather_tokens(stem(x), masking.ids_keep)   # (B, K, W)
        else:
            tokens = enc.stem(x)                                # (B, N, W)
        tokens = enc(tokens, attn_mask)
        if len(self.trunk):
            tokens = tokens + self.modality_embed[modality]
            for blk in self.trunk:
                tokens = blk(tokens, attn_mask=attn_mask)
        tokens = self.norms[modality](tokens)
        return Encoded(tokens, self._pool(tokens, pool_mask), masking, masked, real)

    def _pool(self, tokens: Tensor, attention: Tensor | None) -> Tensor:
        """(B, K, W) → (B, W): mean or max over the tokens (the real ones where ``attention`` (B, K) says).

        Masked max: padding positions take the value of the row's first real token (so they never
        win the max) instead of a huge negative fill, which an int8 quantizer would fold into its
        range and collapse every embedding to 0 (NNCF did, on OpenVINO)."""
        if self.cfg.pool == "max":
            if attention is not None:
                first = attention.to(torch.int64).argmax(1)                                   # (B,)
                anchor = tokens[torch.arange(tokens.shape[0], device=tokens.device), first]   # (B, W)
                tokens = torch.where(attention.unsqueeze(-1), tokens, anchor.unsqueeze(1))
            return tokens.amax(1)
        if attention is None:
            return tokens.mean(1)
        weights = attention.to(tokens.dtype).unsqueeze(-1)     # (B, K, 1)
        return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward_features(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        """Unmasked pooled features (B, W)."""
        return self.encode(modality, x, attention=attention).pooled

    def forward_head(self, modality: str, pooled: Tensor) -> Tensor:
        """Pooled features (B, W) → L2-normalised joint embedding (B, E)."""
        return F.normalize(self.heads[modality](pooled), dim=-1)

    def embed(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        return self.forward_head(modality, self.forward_features(modality, x, attention))

    # ------------------------------------------------------------------ the tower interface
    # Evaluation, fine-tuning, distillation and export use only these methods (plus ``modalities``,
    # ``forward_features``, ``forward_head``, ``embed``), so a student model can stand in for this one.
    def feature_dim(self, modality: str) -> int:
        """Width W of ``forward_features(modality, ·)``."""
        return self.widths[modality]

    def tower_parameters(self, modality: str) -> list[nn.Parameter]:
        """Everything ``forward_features(modality)`` runs through (not the projection head or decoders)."""
        mods: list[nn.Module] = [self.encoders[modality], self.trunk, self.norms[modality]]
        params = [p for mod in mods for p in mod.parameters()]
        if modality in self.modality_embed:
            params.append(self.modality_embed[modality])
        return params

    # ------------------------------------------------------------------ helpers
    def encoder(self, modality: str) -> ModalityEncoder:
        return cast(ModalityEncoder, self.encoders[modality])

    def patch_stem(self, modality: str) -> PatchStem:
        """The patch stem of the image or audio tower."""
        stem = self.encoder(modality).stem
        if not isinstance(stem, PatchStem):
            raise ValueError(f"the {modality} tower has no patch stem")
        return stem

    def text_stem(self) -> TextStem:
        stem = self.encoder("text").stem
        assert isinstance(stem, TextStem)
        return stem

    def sequence_stem(self, modality: str) -> SequenceStem:
        stem = self.encoder(modality).stem
        if not isinstance(stem, SequenceStem):
            raise ValueError(f"the {modality} tower is not a feature-sequence tower")
        return stem

    def decoder(self, modality: str) -> MaskedPatchDecoder:
        """The patch decoder (MAE / VAE) of the image or audio tower."""
        return cast(MaskedPatchDecoder, self.decoders[modality])

    def patch_target(self, modality: str, x: Tensor) -> Tensor:
        """The reconstruction target: the (cropped) input cut into patches, (B, N, C·ph·pw)."""
        from hybridssl.losses.mae import patchify

        stem = self.patch_stem(modality)
        return patchify(stem.crop(x), stem.patch)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer every loss flows through (GradNorm's W): the last trunk block if there is a
        shared trunk, else the last block of every modality encoder."""
        if len(self.trunk):
            return list(self.trunk[-1].parameters())
        params: list[nn.Parameter] = []
        for m in self.modalities:
            blocks = self.encoder(m).blocks
            params += list((blocks[-1] if len(blocks) else self.norms[m]).parameters())
        return params


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
