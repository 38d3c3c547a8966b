from __future__ import annotations

import pytest
import torch

from hybridssl.losses.mlm import mask_tokens, masked_token_loss

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = [PAD, CLS, SEP, MASK]
VOCAB = 50


def _batch(bsz=512, length=48, seed=0):
    """[CLS] w … w [SEP] [PAD] … with random lengths (some rows have no ordinary token at all)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((bsz, length), PAD, dtype=torch.long)
    attention = torch.zeros(bsz, length, dtype=torch.bool)
    lengths = torch.randint(2, length + 1, (bsz,), generator=g)
    lengths[:3] = torch.tensor([2, 3, length])  # [CLS][SEP] only; one word; full row
    for b, n in enumerate(lengths.tolist()):
        ids[b, 0], ids[b, n - 1] = CLS, SEP
        ids[b, 1:n - 1] = torch.randint(4, VOCAB, (n - 2,), generator=g)
        attention[b, :n] = True
    return ids, attention


def _mask(ids, attention, ratio=0.15, seed=0):
    return mask_tokens(ids, attention, mask_token_id=MASK, vocab_size=VOCAB, ratio=ratio, special_ids=SPECIAL,
                       generator=torch.Generator().manual_seed(seed))


def test_selection_counts_and_eligibility():
    ids, attention = _batch()
    corrupted, selected = _mask(ids, attention)
    eligible = attention & (ids >= 4)
    assert not (selected & ~eligible).any()  # never padding, never a special token
    for b in range(ids.shape[0]):
        e = int(eligible[b].sum())
        expected = 0 if e == 0 else max(1, round(0.15 * e))
        assert int(selected[b].sum()) == expected
    assert int(selected[0].sum()) == 0 and int(selected[1].sum()) == 1
    torch.testing.assert_close(corrupted[~selected], ids[~selected], rtol=0, atol=0)


def test_80_10_10_statistics():
    ids, attention = _batch()
    corrupted, selected = _mask(ids, attention, ratio=0.5)
    orig, new = ids[selected], corrupted[selected]
    assert orig.numel() > 5000  # the tolerances below are > 4 standard deviations
    masked = (new == MASK).float().mean().item()
    unchanged = (new == orig).float().mean().item()
    random = ((new != MASK) & (new != orig)).float().mean().item()
    assert abs(masked - 0.8) < 0.03
    # a random draw hits the original id with probability 1/46, which then counts as unchanged
    assert abs(random - 0.1 * 45 / 46) < 0.03
    assert abs(unchanged - (0.1 + 0.1 / 46)) < 0.03
    replaced = new[(new != MASK) & (new != orig)]
    assert ((replaced >= 4) & (replaced < VOCAB)).all()  # random ids are never special, always in range
    assert replaced.unique().numel() > 30  # and spread over the vocabulary


def test_deterministic_for_a_fixed_generator():
    ids, attention = _batch(64)
    a, b = _mask(ids, attention, seed=4), _mask(ids, attention, seed=4)
    c = _mask(ids, attention, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_ratio_one_selects_every_eligible_token():
    ids, attention = _batch(32)
    _, selected = _mask(ids, attention, ratio=1.0)
    torch.testing.assert_close(selected, attention & (ids >= 4), rtol=0, atol=0)


@pytest.mark.parametrize("kw", [
    dict(ratio=0.0), dict(ratio=1.5), dict(mask_token_id=VOCAB), dict(vocab_size=0),
    dict(special_ids=list(range(VOCAB))),
])
def test_mask_tokens_bad_arguments(kw):
    ids, attention = _batch(4)
    args = dict(mask_token_id=MASK, vocab_size=VOCAB, ratio=0.15, special_ids=SPECIAL)
    args.update(kw)
    with pytest.raises(ValueError):
        mask_tokens(ids, attention, **args)


def test_mask_tokens_bad_tensors():
    ids, attention = _batch(4)
    args = dict(mask_token_id=MASK, vocab_size=VOCAB, ratio=0.15, special_ids=SPECIAL)
    with pytest.raises(ValueError):
        mask_tokens(ids.float(), attention, **args)
    with pytest.raises(ValueError):
        mask_tokens(ids, attention[:, :-1], **args)
    with pytest.raises(ValueError):
        mask_tokens(ids[0], attention[0], **args)


def test_masked_token_loss_matches_loop_reference_with_gradients():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    selected = torch.tensor([[1, 0, 0, 1, 1], [0, 1, 0, 0, 0]], dtype=torch.bool)
    fast = masked_token_loss(logits, targets, selected)
    terms = []
    for b in range(2):
        for pos in range(5):
            if selected[b, pos]:
                row = logits[b, pos]
                terms.append(torch.log(sum(torch.exp(row[v]) for v in range(7))) - row[targets[b, pos]])
    ref = sum(terms) / len(terms)
    assert fast.item() == pytest.approx(ref.item(), abs=1e-12)
    grad = torch.autograd.grad(fast, logits)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(ref, logits)[0])
    assert (grad[~selected] == 0).all()


def test_masked_token_loss_bad_input():
    logits, targets = torch.randn(2, 5, 7), torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="no position"):
        masked_token_loss(logits, targets, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        masked_token_loss(logits, targets, torch.ones(2, 5))
    with pytest.raises(ValueError):
        masked_token_loss(logits, targets[:, :4], torch.ones(2, 4, dtype=torch.bool))
