from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hybridssl.losses.infonce as infonce_mod
from hybridssl.losses.infonce import InfoNCELoss, chance_level, info_nce


def _lse(values):
    """log Σ exp(v) of a list of 0-d tensors, written out (max-shifted)."""
    m = max(v.detach().item() for v in values)
    return m + torch.log(sum(torch.exp(v - m) for v in values))


def reference_direction(x, y, scale, queue=None, extra=None, excluded=None, offset=0):
    """Mean over anchors x_i of −log softmax at candidate offset+i, one row at a time.

    Candidates: y_j (j not excluded[i][j], or j == offset+i), then queue rows, then extra[i, s].
    """
    total = 0.0
    for i in range(x.shape[0]):
        t = offset + i
        cands = [scale * torch.dot(x[i], y[j]) for j in range(y.shape[0])
                 if j == t or excluded is None or not excluded[i][j]]
        if queue is not None:
            cands += [scale * torch.dot(x[i], queue[k]) for k in range(queue.shape[0])]
        if extra is not None:
            cands += [scale * torch.dot(x[i], extra[i, s]) for s in range(extra.shape[1])]
        total = total + _lse(cands) - scale * torch.dot(x[i], y[t])
    return total / x.shape[0]


def reference_info_nce(a, b, scale, queue_a=None, queue_b=None, extra_ab=None, extra_ba=None, mask=None):
    mask_t = None if mask is None else mask.T
    return (reference_direction(a, b, scale, queue_b, extra_ab, mask)
            + reference_direction(b, a, scale, queue_a, extra_ba, mask_t)) / 2


def _unit(*shape, gen, grad=False):
    x = F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)
    return x.requires_grad_(grad)


@pytest.mark.parametrize("use_queue, use_extra, use_mask", [
    (False, False, False), (True, False, False), (False, True, False), (True, True, True), (False, False, True),
])
def test_matches_loop_reference_values_and_gradients(use_queue, use_extra, use_mask):
    g = torch.Generator().manual_seed(7)
    bsz, d = 5, 6
    a, b = _unit(bsz, d, gen=g, grad=True), _unit(bsz, d, gen=g, grad=True)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    kw, leaves = {}, [a, b, scale]
    if use_queue:
        kw["queue_a"], kw["queue_b"] = _unit(4, d, gen=g, grad=True), _unit(3, d, gen=g, grad=True)
        leaves += [kw["queue_a"], kw["queue_b"]]
    if use_extra:
        kw["extra_negatives_ab"] = _unit(bsz, 2, d, gen=g, grad=True)
        kw["extra_negatives_ba"] = _unit(bsz, 3, d, gen=g, grad=True)
        leaves += [kw["extra_negatives_ab"], kw["extra_negatives_ba"]]
    if use_mask:  # deliberately asymmetric, with a True diagonal entry (which must be ignored)
        mask = torch.zeros(bsz, bsz, dtype=torch.bool)
        mask[0, 1] = mask[2, 4] = mask[4, 2] = mask[3, 3] = True
        kw["positive_mask"] = mask
    fast = info_nce(a, b, scale, **kw)
    ref = reference_info_nce(a, b, scale, kw.get("queue_a"), kw.get("queue_b"), kw.get("extra_negatives_ab"),
                             kw.get("extra_negatives_ba"), kw.get("positive_mask"))
    assert fast.item() == pytest.approx(ref.item(), abs=1e-10)
    for gf, gr in zip(torch.autograd.grad(fast, leaves), torch.autograd.grad(ref, leaves)):
        torch.testing.assert_close(gf, gr, atol=1e-10, rtol=1e-8)


def test_float32_within_1e5_of_reference():
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    b = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    q = F.normalize(torch.randn(6, 16, generator=g), dim=1)
    scale = torch.tensor(1 / 0.07)
    fast = info_nce(a, b, scale, queue_a=q, queue_b=q.flip(0))
    ref = reference_info_nce(a.double(), b.double(), scale.double(), q.double(), q.flip(0).double())
    assert fast.item() == pytest.approx(ref.item(), abs=1e-5)


def test_perfect_alignment_with_high_scale_is_near_zero():
    e = torch.eye(8, 16)
    assert info_nce(e, e.clone(), torch.tensor(100.0)).item() < 1e-6


def test_random_embeddings_at_unit_scale_are_near_chance():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(64, 128, generator=g), dim=1)
    b = F.normalize(torch.randn(64, 128, generator=g), dim=1)
    loss = info_nce(a, b, torch.tensor(1.0)).item()
    assert abs(loss - chance_level(64)) < 0.1


def test_queue_negatives_increase_the_loss():
    g = torch.Generator().manual_seed(1)
    a, b = _unit(6, 8, gen=g), _unit(6, 8, gen=g)
    scale = torch.tensor(5.0, dtype=torch.float64)
    base = info_nce(a, b, scale)
    with_queue = info_nce(a, b, scale, queue_a=_unit(10, 8, gen=g), queue_b=_unit(10, 8, gen=g))
    assert with_queue.item() > base.item() + 1e-3


def test_empty_queue_and_extras_change_nothing():
    g = torch.Generator().manual_seed(2)
    a, b = _unit(4, 5, gen=g), _unit(4, 5, gen=g)
    scale = torch.tensor(2.0, dtype=torch.float64)
    empty = torch.zeros(0, 5, dtype=torch.float64)
    got = info_nce(a, b, scale, queue_a=empty, queue_b=empty,
                   extra_negatives_ab=torch.zeros(4, 0, 5, dtype=torch.float64),
                   extra_negatives_ba=torch.zeros(4, 0, 5, dtype=torch.float64))
    assert got.item() == pytest.approx(info_nce(a, b, scale).item(), abs=1e-12)


def test_positive_mask_removes_the_duplicate_from_the_denominator():
    g = torch.Generator().manual_seed(4)
    bsz, d = 5, 6
    a, b = _unit(bsz, d, gen=g), _unit(bsz, d, gen=g)
    b[1] = b[0]  # items 0 and 1 carry the same caption
    a[1] = a[0] + 0.1 * a[1]
    a = F.normalize(a, dim=1)
    scale = torch.tensor(4.0, dtype=torch.float64)
    mask = torch.zeros(bsz, bsz, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True
    mask.fill_diagonal_(True)  # as built from captions: an item equals itself — ignored
    got = info_nce(a, b, scale, positive_mask=mask).item()

    def direction(x, y):
        rows = []
        for i in range(bsz):
            keep = [j for j in range(bsz) if not (i in (0, 1) and j == 1 - i)]  # drop the duplicate column
            logits = scale * x[i] @ y[keep].T
            rows.append(F.cross_entropy(logits[None], torch.tensor([keep.index(i)])))
        return torch.stack(rows).mean()

    expected = ((direction(a, b) + direction(b, a)) / 2).item()
    assert got == pytest.approx(expected, abs=1e-12)
    assert got < info_nce(a, b, scale).item()  # the duplicate was being penalised as a negative


def test_float_scale_and_all_false_mask():
    g = torch.Generator().manual_seed(5)
    a, b = _unit(3, 4, gen=g), _unit(3, 4, gen=g)
    ref = info_nce(a, b, torch.tensor(2.0, dtype=torch.float64))
    assert info_nce(a, b, 2.0).item() == pytest.approx(ref.item(), abs=1e-12)
    all_false = torch.zeros(3, 3, dtype=torch.bool)
    assert info_nce(a, b, 2.0, positive_mask=all_false).item() == pytest.approx(ref.item(), abs=1e-12)


def test_module_without_distributed_equals_function():
    g = torch.Generator().manual_seed(6)
    a, b = _unit(4, 5, gen=g), _unit(4, 5, gen=g)
    scale = torch.tensor(3.0, dtype=torch.float64)
    q = _unit(2, 5, gen=g)
    expected = info_nce(a, b, scale, queue_b=q).item()
    assert InfoNCELoss()(a, b, scale, queue_b=q).item() == pytest.approx(expected, abs=1e-12)
    assert InfoNCELoss(gather_distributed=True)(a, b, scale, queue_b=q).item() == pytest.approx(expected, abs=1e-12)


def test_gather_path_scores_local_rows_against_the_global_batch(monkeypatch):
    """Simulate rank 1 of 2: the other rank's rows are candidates, targets are offset by rank·B."""
    g = torch.Generator().manual_seed(8)
    bsz, d = 3, 4
    a_other, b_other = _unit(bsz, d, gen=g), _unit(bsz, d, gen=g)
    a, b = _unit(bsz, d, gen=g, grad=True), _unit(bsz, d, gen=g, grad=True)
    others = {id(a): a_other, id(b): b_other}
    monkeypatch.setattr(infonce_mod, "_world", lambda: (1, 2))
    monkeypatch.setattr(infonce_mod, "_gather_with_grad", lambda x, world: torch.cat([others[id(x)], x]))
    mask = torch.zeros(bsz, bsz, dtype=torch.bool)
    mask[0, 2] = True
    scale = torch.tensor(2.5, dtype=torch.float64)
    qa = _unit(2, d, gen=g)
    got = InfoNCELoss(gather_distributed=True)(a, b, scale, queue_a=qa, positive_mask=mask)

    a_all, b_all = torch.cat([a_other, a]), torch.cat([b_other, b])
    glob = torch.zeros(bsz, 2 * bsz, dtype=torch.bool)
    glob[:, bsz:] = mask
    glob_t = torch.zeros(bsz, 2 * bsz, dtype=torch.bool)
    glob_t[:, bsz:] = mask.T
    ref = (reference_direction(a, b_all, scale, None, None, glob, offset=bsz)
           + reference_direction(b, a_all, scale, qa, None, glob_t, offset=bsz)) / 2
    assert got.item() == pytest.approx(ref.item(), abs=1e-10)
    for gf, gr in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(ref, (a, b))):
        torch.testing.assert_close(gf, gr, atol=1e-10, rtol=1e-8)


def test_chance_level():
    assert chance_level(1) == 0.0
    assert chance_level(10) == pytest.approx(math.log(10))
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            chance_level(bad)


def _bad_cases():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    s = torch.tensor(1.0)
    return [
        dict(a=torch.randn(4), b=torch.randn(4), scale=s),
        dict(a=a, b=torch.randn(2, 4), scale=s),
        dict(a=a, b=torch.randn(3, 5), scale=s),
        dict(a=torch.randn(0, 4), b=torch.randn(0, 4), scale=s),
        dict(a=a, b=b, scale=torch.ones(2)),
        dict(a=a, b=b, scale=s, queue_a=torch.randn(5, 3)),
        dict(a=a, b=b, scale=s, queue_b=torch.randn(5)),
        dict(a=a, b=b, scale=s, extra_negatives_ab=torch.randn(2, 2, 4)),
        dict(a=a, b=b, scale=s, extra_negatives_ba=torch.randn(3, 4)),
        dict(a=a, b=b, scale=s, positive_mask=torch.zeros(3, 2, dtype=torch.bool)),
        dict(a=a, b=b, scale=s, positive_mask=torch.zeros(3, 3)),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_raises_value_error(case):
    kw = _bad_cases()[case]
    with pytest.raises(ValueError):
        info_nce(kw.pop("a"), kw.pop("b"), kw.pop("scale"), **kw)


def test_hard_negative_reweighting_matches_the_hcl_formula():
    """loss_i = −l⁺ + log(exp(l⁺) + N·Σ_j w_j exp(l_j)), w_j = exp(β l_j)/Σ_k exp(β l_k) (Robinson et al.
    2021, no debiasing), averaged over both directions; β → 0 is plain InfoNCE."""
    import math

    from hybridssl.losses.infonce import hard_negative_logits, info_nce

    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    scale, beta = torch.tensor(7.0, dtype=torch.float64), 0.8

    def hcl(x, y):
        total = 0.0
        for i in range(6):
            logits = [float(scale * x[i] @ y[j]) for j in range(6)]
            neg = [l for j, l in enumerate(logits) if j != i]
            w = [math.exp(beta * l) / sum(math.exp(beta * m) for m in neg) for l in neg]
            total += -logits[i] + math.log(math.exp(logits[i]) + len(neg) * sum(wj * math.exp(l) for wj, l in zip(w, neg)))
        return total / 6

    expected = (hcl(a, b) + hcl(b, a)) / 2
    assert float(info_nce(a, b, scale, hard_negative_beta=beta)) == pytest.approx(expected, rel=1e-9)
    assert float(info_nce(a, b, scale, hard_negative_beta=1e-12)) == pytest.approx(float(info_nce(a, b, scale)), rel=1e-9)
    logits = torch.tensor([[1.0, 2.0, float("-inf"), 0.5]], dtype=torch.float64)
    out = hard_negative_logits(logits, torch.tensor([0]), 1.0)
    assert out[0, 0] == 1.0 and torch.isinf(out[0, 2])  # the positive and excluded entries are untouched
