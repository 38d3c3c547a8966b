"""Masked max pooling: the max over the real tokens, with no extreme fill values in the graph
(an int8 quantizer folding a −3.4e38 fill into its range collapsed every OpenVINO int8 embedding to 0)."""

import torch

from hybridssl.config import load_config
from hybridssl.runs import build_model


def test_masked_max_is_the_max_over_real_tokens():
    model = build_model(load_config("tiny", ["model.pool=max"]), vocab_size=50)
    tokens = torch.randn(3, 6, 4) - 5.0                  # every real value negative: a 0 fill would win
    attention = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    pooled = model._pool(tokens, attention)
    for i in range(3):
        assert torch.equal(pooled[i], tokens[i, attention[i]].amax(0))
