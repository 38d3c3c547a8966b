from __future__ import annotations

import math

import pytest
import torch

from hybridssl.losses.vae import gaussian_kl, kl_weight, reparameterize, vae_loss


def reference_kl(mu, logvar):
    """Per-element closed form ½(σ² + μ² − 1 − log σ²), summed per item, averaged over items."""
    flat_mu, flat_lv = mu.reshape(mu.shape[0], -1), logvar.reshape(mu.shape[0], -1)
    total = 0.0
    for b in range(mu.shape[0]):
        for k in range(flat_mu.shape[1]):
            m, lv = flat_mu[b, k], flat_lv[b, k]
            total = total + 0.5 * (torch.exp(lv) + m ** 2 - 1 - lv)
    return total / mu.shape[0]


def test_kl_known_values():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # ½[(1 + 1 − 1 − 0) + (2 + 0 − 1 − log 2)] = 1 − ½ log 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(1 - 0.5 * math.log(2), rel=1e-6)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_kl_matches_loop_reference_and_torch_distributions_with_gradients():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    fast, ref = gaussian_kl(mu, logvar), reference_kl(mu, logvar)
    assert fast.item() == pytest.approx(ref.item(), abs=1e-10)
    for gf, gr in zip(torch.autograd.grad(fast, (mu, logvar)), torch.autograd.grad(ref, (mu, logvar))):
        torch.testing.assert_close(gf, gr)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=(1, 2)).mean()
    assert fast.item() == pytest.approx(expected.item(), rel=1e-10)


def test_reparameterize_moments_gradients_and_determinism():
    mu = torch.tensor([[1.5, -2.0]], requires_grad=True)
    logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], requires_grad=True)
    z = reparameterize(mu.expand(20000, 2), logvar.expand(20000, 2), torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([2.0, 0.5]), atol=0.03, rtol=0)
    gm, = torch.autograd.grad(z.sum(), mu)
    assert gm.tolist() == [[20000.0, 20000.0]]  # dz/dμ = 1
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


def test_kl_weight_schedule():
    assert kl_weight(0, 100) == 0.0
    assert kl_weight(50, 100) == pytest.approx(0.5)
    assert kl_weight(25, 100, beta=2.0) == pytest.approx(0.5)
    assert kl_weight(100, 100, beta=2.0) == 2.0
    assert kl_weight(10_000, 100, beta=0.3) == pytest.approx(0.3)
    assert kl_weight(0, 0, beta=0.7) == pytest.approx(0.7)
    values = [kl_weight(s, 10) for s in range(12)]
    assert values == sorted(values)
    for bad in [(-1, 10), (5, -1), (5, 10, -1.0)]:
        with pytest.raises(ValueError):
            kl_weight(*bad)


@pytest.mark.parametrize("masked", [False, True])
def test_vae_loss_parts_against_loops(masked):
    g = torch.Generator().manual_seed(1)
    recon = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    mu = torch.randn(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [0, 1, 1]]) if masked else None
    total, rec, kl = vae_loss(recon, target, mu, logvar, beta=0.3, mask=mask)
    num, den = 0.0, 0
    for b in range(2):
        for n in range(3):
            if mask is None or mask[b, n]:
                num = num + sum((recon[b, n, i] - target[b, n, i]) ** 2 for i in range(4))
                den += 4
    ref_rec = num / den
    ref_total = ref_rec + 0.3 * reference_kl(mu, logvar)
    assert rec.item() == pytest.approx(ref_rec.item(), abs=1e-12)
    assert kl.item() == pytest.approx(reference_kl(mu, logvar).item(), abs=1e-12)
    assert total.item() == pytest.approx(ref_total.item(), abs=1e-12)
    leaves = (recon, mu, logvar)
    for gf, gr in zip(torch.autograd.grad(total, leaves), torch.autograd.grad(ref_total, leaves)):
        torch.testing.assert_close(gf, gr)


def test_vae_loss_bad_input():
    x = torch.randn(2, 3, 4)
    z = torch.zeros(2, 5)
    with pytest.raises(ValueError):
        vae_loss(x, torch.randn(2, 3, 5), z, z, 1.0)
    with pytest.raises(ValueError):
        vae_loss(x, x, z, torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError):
        vae_loss(x, x, z, z, -1.0)
    with pytest.raises(ValueError):
        vae_loss(x, x, z, z, 1.0, mask=torch.zeros(2, 3))
    with pytest.raises(ValueError):
        gaussian_kl(torch.zeros(3), torch.zeros(3))
