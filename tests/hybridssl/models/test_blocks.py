"""The owned transformer block is timm's ViT Block: same parameter names, same initial weights
from the same seed, same outputs (with and without a padding mask and stochastic depth)."""

import subprocess
import sys

import pytest
import torch

from hybridssl.models.blocks import Block, drop_path

timm_vit = pytest.importorskip("timm.models.vision_transformer")


def pair(drop: float = 0.0) -> tuple[Block, torch.nn.Module]:
    torch.manual_seed(0)
    ours = Block(32, 4, mlp_ratio=4.0, qkv_bias=True, drop_path=drop)
    torch.manual_seed(0)
    theirs = timm_vit.Block(32, 4, mlp_ratio=4.0, qkv_bias=True, drop_path=drop)
    return ours, theirs


def test_same_parameters_and_initial_weights_as_timm() -> None:
    ours, theirs = pair()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("masked", [False, True])
def test_same_outputs_as_timm(masked: bool) -> None:
    ours, theirs = pair()
    x = torch.randn(3, 7, 32)
    mask = None
    if masked:  # the text tower's padding mask: (B, 1, 1, L) boolean, True = attend
        keep = torch.arange(7)[None, :] < torch.tensor([7, 4, 1])[:, None]
        mask = keep[:, None, None, :]
    torch.testing.assert_close(ours(x, attn_mask=mask), theirs(x, attn_mask=mask), rtol=1e-5, atol=1e-6)


def test_stochastic_depth_matches_timm_in_training() -> None:
    ours, theirs = pair(drop=0.5)
    ours.train(), theirs.train()
    x = torch.randn(16, 5, 32)
    torch.manual_seed(1)
    y1 = ours(x)
    torch.manual_seed(1)
    y2 = theirs(x)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-6)


def test_drop_path_formula() -> None:
    x = torch.ones(1000, 2, 3)
    y = drop_path(x, 0.25, training=True)
    kept = y[:, 0, 0] != 0
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))  # survivors scaled by 1/(1-p)
    assert 0.6 < kept.float().mean() < 0.9
    assert torch.equal(drop_path(x, 0.25, training=False), x)


def test_model_import_does_not_pull_timm() -> None:
    code = "import sys, hybridssl.models.hybrid; print(any(m.split('.')[0] in {'timm', 'torchvision'} for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
