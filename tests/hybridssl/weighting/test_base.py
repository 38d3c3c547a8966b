from __future__ import annotations

import math

import pytest
import torch

from hybridssl.weighting.base import LossWeighting, WeightingContext, is_contrastive, loss_group, weighted_sum
from hybridssl.weighting.fixed import FixedWeighting

NAMES = ["contrastive/image-text", "mae/image", "mlm/text"]
CTX = WeightingContext(step=0, batch_sizes={})


def test_loss_group_and_contrastive():
    assert loss_group("contrastive/audio-image") == "contrastive"
    assert loss_group("mae/image") == "mae"
    assert loss_group("plain") == "plain"
    assert is_contrastive("contrastive/x") and not is_contrastive("mae/x")


def test_present_keeps_declared_order_and_subset():
    m = FixedWeighting(NAMES)
    items = m.present({"mlm/text": torch.tensor(1.0), "contrastive/image-text": torch.tensor(2.0)})
    assert [(i, n) for i, n, _ in items] == [(0, "contrastive/image-text"), (2, "mlm/text")]


@pytest.mark.parametrize("losses, match", [
    ({}, "non-empty"),
    ({"mae/audio": torch.tensor(1.0)}, "unknown loss names"),
    ({"mae/image": torch.ones(2)}, "scalar"),
    ({"mae/image": 1.0}, "scalar"),
    ({"mae/image": torch.tensor(math.nan)}, "not finite"),
    ({"mae/image": torch.tensor(math.inf)}, "not finite"),
])
def test_present_rejects_bad_losses(losses, match):
    with pytest.raises(ValueError, match=match):
        FixedWeighting(NAMES)(losses, CTX)


@pytest.mark.parametrize("names", [[], ["a/b", "a/b"], ["a/b", ""]])
def test_bad_loss_names(names):
    with pytest.raises(ValueError):
        FixedWeighting(names)


def test_base_rejects_unknown_options_and_forward_is_abstract():
    with pytest.raises(TypeError, match="unexpected options"):
        LossWeighting(NAMES, foo=1)
    with pytest.raises(NotImplementedError):
        LossWeighting(NAMES)({"mae/image": torch.tensor(1.0)}, CTX)


def test_weighted_sum_matches_loop():
    losses = [torch.tensor(v, requires_grad=True) for v in (1.5, 2.0, 0.25)]
    items = [(i, f"g/{i}", l) for i, l in enumerate(losses)]
    total = weighted_sum(items, [0.5, 2.0, 4.0])
    assert total.item() == pytest.approx(0.75 + 4.0 + 1.0)
    total.backward()
    assert [l.grad.item() for l in losses] == [0.5, 2.0, 4.0]
