from __future__ import annotations

import pytest

from hybridssl.weighting.adaptive import AdaptiveWeighting
from hybridssl.weighting.dwa import DynamicWeightAverage
from hybridssl.weighting.factory import available_weightings, create_weighting
from hybridssl.weighting.fixed import FixedWeighting
from hybridssl.weighting.gradnorm import GradNorm
from hybridssl.weighting.uncertainty import UncertaintyWeighting

NAMES = ["contrastive/image-text", "mae/image"]


@pytest.mark.parametrize("name, cls", [("fixed", FixedWeighting), ("uncertainty", UncertaintyWeighting),
                                       ("dwa", DynamicWeightAverage), ("gradnorm", GradNorm),
                                       ("adaptive", AdaptiveWeighting)])
def test_creates_each(name, cls):
    m = create_weighting(name, NAMES)
    assert type(m) is cls and m.name == name and m.loss_names == tuple(NAMES)


def test_options_are_passed_through():
    assert create_weighting("dwa", NAMES, period=7, temperature=3.0).period == 7
    assert create_weighting("gradnorm", NAMES, alpha=0.5).alpha == 0.5
    with pytest.raises(TypeError):
        create_weighting("fixed", NAMES, period=3)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown loss weighting 'pcgrad'") as err:
        create_weighting("pcgrad", NAMES)
    for valid in ("fixed", "uncertainty", "dwa", "gradnorm", "adaptive"):
        assert valid in str(err.value)
    assert available_weightings() == ["fixed", "uncertainty", "dwa", "gradnorm", "adaptive"]
