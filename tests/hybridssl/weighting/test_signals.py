from __future__ import annotations

import math

import pytest
import torch

from hybridssl.weighting.signals import contrastive_difficulty, feature_redundancy


def _reference(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> float:
    b, d = z1.shape

    def standardise(z):
        cols = []
        for j in range(d):
            col = [float(z[i, j]) for i in range(b)]
            mu = sum(col) / b
            sd = max(math.sqrt(sum((v - mu) ** 2 for v in col) / b), eps)
            cols.append([(v - mu) / sd for v in col])
        return cols                                        # cols[j][i]

    a, c = standardise(z1), standardise(z2)
    off = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                cij = sum(a[i][k] * c[j][k] for k in range(b)) / b
                off += cij * cij
    return off / (d * (d - 1))


def _whitened(b: int, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    q, _ = torch.linalg.qr(x)                              # (B, D) orthonormal, zero-mean columns
    return (q * math.sqrt(b)).float()


def test_decorrelated_features_give_zero():
    z = _whitened(16, 5)
    assert feature_redundancy(z, z).item() == pytest.approx(0.0, abs=1e-6)


def test_identical_columns_give_one():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 1, generator=g)
    z1 = x * torch.tensor([1.0, 2.0, 0.5, 3.0]) + torch.tensor([0.0, 1.0, -2.0, 5.0])  # (10, 4)
    assert feature_redundancy(z1, z1).item() == pytest.approx(1.0, abs=1e-5)
    assert feature_redundancy(z1, -z1).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("b, d", [(7, 5), (3, 2), (12, 3)])
def test_matches_loop_reference(b, d):
    g = torch.Generator().manual_seed(b * 10 + d)
    z1 = torch.randn(b, d, generator=g)
    z2 = z1 @ torch.randn(d, d, generator=g) + 0.3 * torch.randn(b, d, generator=g)
    z2[:, 0] = 4.0                                         # constant column: zero correlation
    got = feature_redundancy(z1, z2).item()
    assert got == pytest.approx(_reference(z1, z2), rel=1e-4, abs=1e-7)
    assert 0.0 <= got <= 1.0


def test_output_is_detached_scalar():
    z = torch.randn(4, 3, requires_grad=True)
    r = feature_redundancy(z, z * 2)
    assert r.shape == () and not r.requires_grad


@pytest.mark.parametrize("z1, z2, match", [
    (torch.randn(1, 3), torch.randn(1, 3), "at least 2 samples"),
    (torch.randn(4, 3), torch.randn(4, 2), "same shape"),
    (torch.randn(4), torch.randn(4), r"\(B, D\)"),
    (torch.randn(4, 1), torch.randn(4, 1), "2 feature dimensions"),
    (torch.tensor([[1.0, float("nan")], [2.0, 3.0]]), torch.ones(2, 2), "non-finite"),
])
def test_bad_inputs(z1, z2, match):
    with pytest.raises(ValueError, match=match):
        feature_redundancy(z1, z2)


def test_contrastive_difficulty():
    assert contrastive_difficulty(math.log(8), 8) == pytest.approx(1.0)
    assert contrastive_difficulty(1.0, 4) == pytest.approx(1.0 / math.log(4))
    with pytest.raises(ValueError, match="N >= 2"):
        contrastive_difficulty(1.0, 1)
    with pytest.raises(ValueError, match="int"):
        contrastive_difficulty(1.0, 2.5)
