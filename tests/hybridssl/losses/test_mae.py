from __future__ import annotations

import pytest
import torch

from hybridssl.losses.mae import mae_loss, patchify, unpatchify


def reference_patchify(x, ph, pw):
    bsz, c, h, w = x.shape
    gw = w // pw
    out = torch.empty(bsz, (h // ph) * gw, ph * pw * c, dtype=x.dtype)
    for b in range(bsz):
        for r in range(h // ph):
            for col in range(gw):
                for i in range(ph):
                    for j in range(pw):
                        for ch in range(c):
                            out[b, r * gw + col, (i * pw + j) * c + ch] = x[b, ch, r * ph + i, col * pw + j]
    return out


def reference_mae_loss(pred, target, mask, norm_pix=False):
    bsz, n, p = pred.shape
    num, den = 0.0, 0.0
    for b in range(bsz):
        for k in range(n):
            t = target[b, k]
            if norm_pix:
                mean = sum(t[i] for i in range(p)) / p
                var = sum((t[i] - mean) ** 2 for i in range(p)) / (p - 1)  # unbiased, like torch.var
                t = (t - mean) / (var + 1e-6) ** 0.5
            err = sum((pred[b, k, i] - t[i]) ** 2 for i in range(p)) / p
            num = num + float(mask[b, k]) * err
            den += float(mask[b, k])
    return num / den


@pytest.mark.parametrize("c, h, w, ph, pw", [(3, 4, 9, 2, 3), (1, 6, 4, 3, 2), (2, 4, 4, 4, 4)])
def test_patchify_matches_loop_reference_and_round_trips(c, h, w, ph, pw):
    x = torch.randn(2, c, h, w)
    p = patchify(x, (ph, pw))
    torch.testing.assert_close(p, reference_patchify(x, ph, pw), rtol=0, atol=0)
    torch.testing.assert_close(unpatchify(p, (ph, pw), (h // ph, w // pw), c), x, rtol=0, atol=0)
    q = torch.randn_like(p)
    torch.testing.assert_close(patchify(unpatchify(q, (ph, pw), (h // ph, w // pw), c), (ph, pw)), q, rtol=0, atol=0)


def test_patchify_accepts_an_int_or_a_list():
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(patchify(x, 2), patchify(x, (2, 2)))
    torch.testing.assert_close(patchify(x, [2, 2]), patchify(x, (2, 2)))


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_matches_loop_reference_with_gradients(norm_pix):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 5, 4, generator=g, dtype=torch.float64) * 3 + 1
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]])
    fast = mae_loss(pred, target, mask, norm_pix=norm_pix)
    ref = reference_mae_loss(pred, target, mask, norm_pix=norm_pix)
    assert fast.item() == pytest.approx(ref.item(), abs=1e-10)
    grad = torch.autograd.grad(fast, pred)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(ref, pred)[0])
    # bool mask == 0/1 mask, and visible patches carry no gradient
    assert mae_loss(pred, target, mask.bool(), norm_pix=norm_pix).item() == pytest.approx(fast.item(), abs=1e-12)
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] != 0).any()


def test_norm_pix_target_is_per_patch_standardised():
    target = torch.randn(1, 3, 8, dtype=torch.float64) * 5 + 2
    mask = torch.ones(1, 3)
    # predicting the normalised patch exactly gives zero loss; predicting the raw patch does not
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    assert mae_loss(normed, target, mask, norm_pix=True).item() < 1e-20
    assert mae_loss(target, target, mask, norm_pix=True).item() > 1.0
    assert mae_loss(target, target, mask).item() == 0.0


def test_mae_loss_bad_input():
    pred, target = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="no patch"):
        mae_loss(pred, target, torch.zeros(2, 3))
    with pytest.raises(ValueError):
        mae_loss(pred, torch.randn(2, 3, 5), torch.ones(2, 3))
    with pytest.raises(ValueError):
        mae_loss(pred, target, torch.ones(2, 4))
    with pytest.raises(ValueError):
        mae_loss(pred[..., :1], target[..., :1], torch.ones(2, 3), norm_pix=True)


@pytest.mark.parametrize("x, patch", [
    (torch.randn(1, 3, 5, 4), (2, 2)), (torch.randn(3, 4, 4), (2, 2)), (torch.randn(1, 3, 4, 4), (0, 2)),
    (torch.randn(1, 3, 4, 4), (2, 2, 2)),
])
def test_patchify_bad_input(x, patch):
    with pytest.raises(ValueError):
        patchify(x, patch)


def test_unpatchify_bad_input():
    with pytest.raises(ValueError):
        unpatchify(torch.randn(1, 4, 12), (2, 2), (2, 3), 3)
    with pytest.raises(ValueError):
        unpatchify(torch.randn(1, 6, 11), (2, 2), (2, 3), 3)
