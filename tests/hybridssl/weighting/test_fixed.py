from __future__ import annotations

import pytest
import torch

from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.fixed import FixedWeighting

NAMES = ["contrastive/image-text", "contrastive/audio-image", "mae/image", "mae/audio", "mlm/text"]
CTX = WeightingContext(step=0, batch_sizes={})


def _losses():
    return {n: torch.tensor(float(i + 1), requires_grad=True) for i, n in enumerate(NAMES)}


def test_default_weights_are_one():
    losses = _losses()
    total, w = FixedWeighting(NAMES)(losses, CTX)
    assert w == {n: 1.0 for n in NAMES}
    assert total.item() == pytest.approx(sum(range(1, 6)))


def test_group_and_full_name_weights_with_precedence():
    m = FixedWeighting(NAMES, weights={"contrastive": 2.0, "mae": 0.5, "mae/audio": 3.0})
    losses = _losses()
    total, w = m(losses, CTX)
    expected = {"contrastive/image-text": 2.0, "contrastive/audio-image": 2.0, "mae/image": 0.5,
                "mae/audio": 3.0, "mlm/text": 1.0}
    assert w == expected
    ref = sum(expected[n] * losses[n].item() for n in NAMES)
    assert total.item() == pytest.approx(ref)
    total.backward()
    for n in NAMES:
        assert losses[n].grad.item() == pytest.approx(expected[n])


def test_missing_names_use_present_only():
    m = FixedWeighting(NAMES, weights={"mlm": 4.0})
    total, w = m({"mlm/text": torch.tensor(2.0), "mae/image": torch.tensor(1.0)}, CTX)
    assert w == {"mae/image": 1.0, "mlm/text": 4.0}
    assert total.item() == pytest.approx(9.0)


def test_vae_group_accepted_even_if_absent():
    assert FixedWeighting(NAMES, weights={"vae": 2.0})(_losses(), CTX)[1]["mae/image"] == 1.0


@pytest.mark.parametrize("weights, match", [
    ({"audio": 1.0}, "unknown"),
    ({"mae": -1.0}, ">= 0"),
    ({"mae": float("nan")}, ">= 0"),
])
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        FixedWeighting(NAMES, weights=weights)


def test_state_dict_round_trip_and_repr():
    a = FixedWeighting(NAMES, weights={"mae": 0.25})
    b = FixedWeighting(NAMES)
    b.load_state_dict(a.state_dict())
    assert b(_losses(), CTX)[1] == a(_losses(), CTX)[1]
    assert "Σ_i w_i·L_i" in repr(a) and "mae/image=0.25" in repr(a)
