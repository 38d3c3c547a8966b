"""Masked-frame modelling: the frame masking and the loss against their formulas."""

from __future__ import annotations

import torch

from hybridssl.losses.mfm import count_masked_frames, frame_targets, masked_frame_loss
from hybridssl.models.masking import frame_token_masking


def test_masking_counts_and_never_touches_padding():
    real = torch.tensor([[True] * 10 + [False] * 6, [True] * 3 + [False] * 13, [True] + [False] * 15])
    g = torch.Generator().manual_seed(0)
    masked = frame_token_masking(real, 0.3, n_max=20, generator=g)
    assert masked.sum(1).tolist() == [3, 1, 0]          # ⌊0.3·10⌋, max(1, ⌊0.9⌋), none of a single token
    assert not (masked & ~real).any()
    # the draw is (B, N_max) whatever the padded length: the same rows give the same mask in a longer batch
    g = torch.Generator().manual_seed(0)
    longer = frame_token_masking(torch.cat([real, torch.zeros(3, 4, dtype=torch.bool)], 1), 0.3, 20, g)
    assert torch.equal(longer[:, :16], masked)


def test_loss_is_the_mean_squared_error_over_real_frames_of_masked_tokens():
    g = torch.Generator().manual_seed(1)
    b, t, d, p = 2, 6, 3, 2
    frames = torch.randn(b, t, d, generator=g)
    frame_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    target, valid = frame_targets(frames, frame_mask, p)
    assert target.shape == (2, 3, 6) and valid.shape == (2, 3, 2)
    pred = torch.randn(b, t // p, p * d, generator=g)
    masked = torch.tensor([[False, True, True], [True, True, False]])
    want, n = 0.0, 0
    for i in range(b):
        for k in range(t // p):
            for f in range(p):
                frame = k * p + f
                if masked[i, k] and frame_mask[i, frame]:
                    want += float(((pred[i, k, f * d:(f + 1) * d] - frames[i, frame]) ** 2).mean())
                    n += 1
    assert count_masked_frames(masked, valid) == n == 6
    assert torch.isclose(masked_frame_loss(pred, target, masked, valid), torch.tensor(want / n), rtol=1e-5)
    nothing = masked_frame_loss(pred, target, torch.zeros_like(masked), valid)
    assert float(nothing) == 0.0
