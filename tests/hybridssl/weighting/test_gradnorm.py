from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.gradnorm import GradNorm

NAMES = ["contrastive/image-text", "mae/image"]


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.shared = nn.Linear(3, 4)
        self.head1 = nn.Linear(4, 1)
        self.head2 = nn.Linear(4, 2)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g))
        self.x = torch.randn(6, 3, generator=g)            # (B, 3)
        self.y1 = torch.randn(6, 1, generator=g)           # (B, 1)
        self.y2 = torch.randn(6, 2, generator=g)           # (B, 2)

    def losses(self) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.shared(self.x))                # (B, 4)
        return {NAMES[0]: ((self.head1(h) - self.y1) ** 2).mean(),
                NAMES[1]: 3.0 * ((self.head2(h) - self.y2) ** 2).mean()}


def _ref_grad_norm(model: TwoHeads, name: str) -> float:
    """‖∇_W L‖ by a fresh forward/backward accumulating into .grad, summed over W's tensors."""
    model.zero_grad()
    model.losses()[name].backward()
    sq = 0.0
    for p in model.shared.parameters():
        for g in p.grad.flatten().tolist():
            sq += g * g
    model.zero_grad()
    return sq ** 0.5


def _ref_update(w: list[float], norms: list[float], cur: list[float], init: list[float],
                alpha: float, lr: float) -> list[float]:
    """Expected update via a tiny autograd on a detached copy of the weights."""
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    n = torch.tensor(norms, dtype=torch.float64)
    g = wt * n
    g_bar = g.mean().detach()
    lt = [c / i for c, i in zip(cur, init)]
    r = [x / (sum(lt) / len(lt)) for x in lt]
    loss = sum((g[k] - g_bar * r[k] ** alpha).abs() for k in range(len(w)))
    loss.backward()
    new = [max(w[k] - lr * wt.grad[k].item(), 1e-3) for k in range(len(w))]
    s = sum(new)
    return [v * len(new) / s for v in new]


def _ctx(model: TwoHeads, step: int = 0) -> WeightingContext:
    return WeightingContext(step=step, batch_sizes={}, shared_parameters=list(model.shared.parameters()))


@pytest.mark.parametrize("alpha, lr", [(1.5, 0.025), (0.5, 0.3), (1.5, 50.0)])
def test_updates_match_reference_over_steps(alpha, lr):
    model = TwoHeads()
    m = GradNorm(NAMES, alpha=alpha, lr=lr)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w_ref = [1.0, 1.0]
    init = None
    for step in range(5):
        norms = [_ref_grad_norm(model, n) for n in NAMES]
        losses = model.losses()
        cur = [losses[n].item() for n in NAMES]
        init = init or cur
        total, w = m(losses, _ctx(model, step))
        assert [w[n] for n in NAMES] == pytest.approx(w_ref, rel=1e-5)       # weights used
        w_ref = _ref_update(w_ref, norms, cur, init, alpha, lr)
        assert m.weights.tolist() == pytest.approx(w_ref, rel=1e-4, abs=1e-6)
        assert sum(m.weights.tolist()) == pytest.approx(2.0, rel=1e-5)
        assert min(m.weights.tolist()) > 0.0
        opt.zero_grad()
        total.backward()
        opt.step()
    if lr == 50.0:                                   # huge lr hits the clamp before renormalising
        assert min(m.weights.tolist()) < 0.01


def test_total_uses_weights_before_update_and_is_differentiable():
    model = TwoHeads()
    m = GradNorm(NAMES, lr=0.5)
    m.weights.copy_(torch.tensor([0.5, 1.5]))
    losses = model.losses()
    total, w = m(losses, _ctx(model))
    assert w == {NAMES[0]: 0.5, NAMES[1]: 1.5}
    assert total.item() == pytest.approx(0.5 * losses[NAMES[0]].item() + 1.5 * losses[NAMES[1]].item())
    assert not torch.equal(m.weights, torch.tensor([0.5, 1.5]))
    total.backward()
    g_head2 = model.head2.weight.grad.clone()
    model.zero_grad()
    (1.5 * model.losses()[NAMES[1]]).backward()
    torch.testing.assert_close(g_head2, model.head2.weight.grad)


def test_weights_are_a_buffer_not_a_parameter(tmp_path):
    m = GradNorm(NAMES)
    assert list(m.parameters()) == []
    model = TwoHeads()
    m(model.losses(), _ctx(model))
    torch.save(m.state_dict(), tmp_path / "gn.pt")
    b = GradNorm(NAMES)
    b.load_state_dict(torch.load(tmp_path / "gn.pt"))
    for k in ("weights", "initial_losses", "initialised"):
        assert torch.equal(getattr(b, k), getattr(m, k))


def test_missing_name_keeps_its_state_and_initial_loss_recorded_late():
    model = TwoHeads()
    names = NAMES + ["mae/audio"]
    m = GradNorm(names, lr=0.5)
    m.weights.copy_(torch.tensor([1.0, 1.0, 0.7]))
    m(model.losses(), _ctx(model))
    assert m.weights[2].item() == pytest.approx(0.7)
    assert m.weights[:2].sum().item() == pytest.approx(2.0)
    assert m.initialised.tolist() == [True, True, False]
    losses = model.losses()
    audio = (model.shared(model.x) ** 2).mean()
    m({**losses, "mae/audio": audio}, _ctx(model))
    assert m.initialised.tolist() == [True, True, True]
    assert m.initial_losses[2].item() == pytest.approx(audio.item())
    assert m.weights.sum().item() == pytest.approx(3.0)


def test_needs_shared_parameters_in_training_only():
    model = TwoHeads()
    m = GradNorm(NAMES)
    with pytest.raises(ValueError, match="GradNorm needs the shared parameters"):
        m(model.losses(), WeightingContext(step=0, batch_sizes={}))
    m.eval()
    total, w = m(model.losses(), WeightingContext(step=0, batch_sizes={}))
    assert w == {n: 1.0 for n in NAMES} and m.weights.tolist() == [1.0, 1.0]
    m.train()
    with torch.no_grad():
        m(model.losses(), WeightingContext(step=0, batch_sizes={}))
    assert not bool(m.initialised.any())


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"lr": 0.0}, {"min_weight": 0.0}])
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        GradNorm(NAMES, **kwargs)


def test_repr_states_formula():
    assert "L_grad = Σ_i|G_i − Ḡ·r_i^α|" in repr(GradNorm(NAMES))
