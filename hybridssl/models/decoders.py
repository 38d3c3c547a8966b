"""Generative heads that read the encoder's *visible* tokens (one pass serves both branches).

* :class:`MaskedPatchDecoder` — MAE decoder (He et al. 2022): project visible tokens to the
  decoder width, append a learned [MASK] token for every masked position, unshuffle with
  ``ids_restore``, add decoder positions, run ``depth`` blocks, predict every patch's pixels
  (B, N, P). With ``vae_latent = Z > 0`` each visible token is first mapped to a diagonal
  Gaussian q(z|x) = N(μ, diag(exp(logvar))) (B, n_keep, Z); a reparameterised sample z feeds the
  decoder instead of the token (VAE latent reconstruction, Kingma & Welling 2014).
* :class:`MaskedTokenHead` — BERT-style masked-token prediction: LayerNorm → Linear(W, V).
* :class:`MaskedFrameHead` — masked-frame regression for a feature sequence: LayerNorm → Linear(W, W)
  → GELU → Linear(W, patch·D), the normalised frames of every token (B, N, patch·D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hybridssl.models.blocks import make_blocks
from hybridssl.models.masking import gather_tokens


@dataclass
class DecoderOutput:
    pred: Tensor                 # (B, N, P)
    mu: Tensor | None = None     # (B, n_keep, Z)
    logvar: Tensor | None = None


class MaskedPatchDecoder(nn.Module):
    def __init__(self, in_width: int, width: int, depth: int, heads: int, num_patches: int, patch_dim: int,
                 vae_latent: int = 0) -> None:
        super().__init__()
        self.vae_latent = vae_latent
        if vae_latent > 0:
            self.to_latent = nn.Linear(in_width, 2 * vae_latent)
            self.embed = nn.Linear(vae_latent, width)
        else:
            self.embed = nn.Linear(in_width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, num_patches, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = make_blocks(width, depth, heads, 4.0)
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, patch_dim)

    def forward(self, visible: Tensor, ids_restore: Tensor, generator: torch.Generator | None = None) -> DecoderOutput:
        mu = logvar = None
        if self.vae_latent > 0:
            mu, logvar = self.to_latent(visible).chunk(2, dim=-1)  # (B, K, Z) each
            logvar = logvar.clamp(-10.0, 10.0)
            eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu) if self.training else 0.0
            visible = mu + torch.exp(0.5 * logvar) * eps
        x = self.embed(visible)                                    # (B, K, Wd)
        b, k, w = x.shape
        n = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(b, n - k, w)], dim=1)  # (B, N, Wd) shuffled order
        x = gather_tokens(x, ids_restore) + self.pos               # (B, N, Wd) original order
        for blk in self.blocks:
            x = blk(x)
        return DecoderOutput(self.pred(self.norm(x)), mu, logvar)  # (B, N, P)


class MaskedTokenHead(nn.Module):
    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(self.norm(tokens))  # (B, L, V)


class MaskedFrameHead(nn.Module):
    def __init__(self, width: int, token_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, token_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)  # (B, N, patch·D)
