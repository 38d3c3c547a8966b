from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hybridssl.losses.ntxent import nt_xent


def reference_nt_xent(z1, z2, tau):
    """SimCLR eq. 1 with explicit loops over the 2B anchors and their candidates."""
    b = z1.shape[0]
    z = [F.normalize(v, dim=0) for v in list(z1) + list(z2)]
    total = 0.0
    for k in range(2 * b):
        p = (k + b) % (2 * b)
        num = torch.exp(torch.dot(z[k], z[p]) / tau)
        den = sum(torch.exp(torch.dot(z[k], z[m]) / tau) for m in range(2 * b) if m != k)
        total = total - torch.log(num / den)
    return total / (2 * b)


@pytest.mark.parametrize("b, d, tau", [(1, 3, 0.5), (2, 4, 0.2), (5, 8, 0.1), (6, 3, 1.0)])
def test_matches_loop_reference_values_and_gradients(b, d, tau):
    g = torch.Generator().manual_seed(b * 10 + d)
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    fast = nt_xent(z1, z2, tau)
    ref = reference_nt_xent(z1, z2, tau)
    assert fast.item() == pytest.approx(ref.item(), abs=1e-10)
    g_fast = torch.autograd.grad(fast, (z1, z2))
    g_ref = torch.autograd.grad(ref, (z1, z2))
    for x, y in zip(g_fast, g_ref):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)


def test_single_pair_has_no_negatives_so_zero_loss():
    z = torch.randn(1, 4)
    assert nt_xent(z, torch.randn(1, 4), 0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_scale_invariant_inputs_and_identical_views():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert nt_xent(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(nt_xent(z1, z2, 0.2).item(), rel=1e-5)
    # orthonormal rows, identical views: positives cos 1, negatives cos 0 → log(1 + (2B-2)e^{-1/τ})
    e = torch.eye(4, 8)
    assert nt_xent(e, e, 0.5).item() == pytest.approx(math.log(1 + 6 * math.exp(-2.0)), rel=1e-5)


def test_float32_matches_reference():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(reference_nt_xent(z1, z2, 0.2).item(), abs=1e-5)


@pytest.mark.parametrize("z1, z2, tau", [
    (torch.randn(3, 4), torch.randn(2, 4), 0.1),
    (torch.randn(3, 4), torch.randn(3, 5), 0.1),
    (torch.randn(4), torch.randn(4), 0.1),
    (torch.randn(0, 4), torch.randn(0, 4), 0.1),
    (torch.randn(3, 4), torch.randn(3, 4), 0.0),
    (torch.randn(3, 4), torch.randn(3, 4), float("nan")),
])
def test_bad_input(z1, z2, tau):
    with pytest.raises(ValueError):
        nt_xent(z1, z2, tau)


def test_second_text_view_takes_the_paraphrase_where_there_is_one():
    from hybridssl.losses.ntxent import second_text_view

    masked, attention = torch.tensor([[1, 9, 2], [1, 9, 2]]), torch.ones(2, 3, dtype=torch.bool)
    batch = {"text_para_ids": torch.tensor([[[1, 5, 0]], [[1, 6, 2]]]),
             "text_para_attn": torch.tensor([[[True, True, False]], [[True, True, True]]]),
             "text_para_count": torch.tensor([1, 0])}
    ids, attn = second_text_view(batch, masked, attention, "paraphrase")
    assert ids.tolist() == [[1, 5, 0], [1, 9, 2]] and attn.tolist() == [[True, True, False], [True, True, True]]
    assert second_text_view(batch, masked, attention, "mask")[0] is masked
    assert second_text_view({}, masked, attention, "paraphrase")[0] is masked   # data without paraphrases
    with pytest.raises(ValueError, match="'mask' or 'paraphrase'"):
        second_text_view(batch, masked, attention, "synonyms")
