import torch

from hybridssl.models.masking import gather_tokens, random_masking


def test_masking_is_a_consistent_permutation():
    g = torch.Generator().manual_seed(0)
    m = random_masking(4, 16, 0.75, generator=g)
    assert m.ids_keep.shape == (4, 4)
    assert m.mask.sum(1).tolist() == [12.0] * 4
    x = torch.arange(16.0).view(1, 16, 1).expand(4, 16, 1)
    kept = gather_tokens(x, m.ids_keep)
    # the kept tokens are exactly the unmasked positions
    for b in range(4):
        assert sorted(kept[b, :, 0].long().tolist()) == torch.nonzero(m.mask[b] == 0).flatten().tolist()
    # ids_restore inverts the shuffle
    shuffled = torch.cat([kept, torch.full((4, 12, 1), -1.0)], 1)
    restored = gather_tokens(shuffled, m.ids_restore)
    assert torch.equal(restored[..., 0] >= 0, m.mask == 0)


def test_masking_keeps_at_least_one_and_rejects_bad_ratio():
    assert random_masking(2, 3, 0.99).ids_keep.shape == (2, 1)
    import pytest

    with pytest.raises(ValueError):
        random_masking(2, 3, 1.0)
