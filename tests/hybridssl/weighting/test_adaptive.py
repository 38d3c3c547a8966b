from __future__ import annotations

import math

import pytest
import torch

from hybridssl.weighting.adaptive import AdaptiveWeighting, feature_redundancy
from hybridssl.weighting.base import WeightingContext

NAMES = ["contrastive/image-text", "contrastive/audio-image", "mae/image", "mae/audio", "mlm/text"]
CON = NAMES[:2]


def _reference(seq, ema=0.9, kappa=1.0, base=None, w_min=0.1, w_max=5.0):
    """Loop reference: seq = [(losses: dict[str, float], batch_sizes, redundancy | None)]."""
    base = base or {}
    d: dict[str, float] = {}
    r = None
    out = []
    for losses, sizes, red in seq:
        for n in CON:
            if n in losses:
                x = losses[n] / math.log(sizes[n])
                d[n] = x if n not in d else ema * d[n] + (1 - ema) * x
        if red is not None:
            r = red if r is None else ema * r + (1 - ema) * red
        present = [n for n in CON if n in losses]
        mean = sum(d[n] for n in present) / len(present) if present else 0.0
        w = {}
        for n in NAMES:
            if n not in losses:
                continue
            if n in CON:
                raw = d[n] / mean
            else:
                raw = base.get(n, base.get(n.split("/")[0], 1.0)) * (1 + kappa * (r or 0.0))
            w[n] = min(max(raw, w_min), w_max)
        out.append(w)
    return out


def _sequence():
    sizes = {"contrastive/image-text": 32, "contrastive/audio-image": 16}
    seq = []
    for t in range(8):
        losses = {"contrastive/image-text": 3.0 - 0.2 * t, "contrastive/audio-image": 2.7 - 0.02 * t,
                  "mae/image": 0.8, "mae/audio": 1.1, "mlm/text": 2.0}
        if t in (2, 5):                                    # batches without audio
            del losses["contrastive/audio-image"], losses["mae/audio"]
        red = None if t == 3 else 0.1 + 0.05 * t
        seq.append((losses, dict(sizes, **{"contrastive/image-text": 32 - t}), red))
    return seq


def _run(m, seq, start=0):
    got = []
    for t, (losses, sizes, red) in enumerate(seq[start:], start=start):
        lt = {n: torch.tensor(v, requires_grad=True) for n, v in losses.items()}
        total, w = m(lt, WeightingContext(step=t, batch_sizes=sizes, redundancy=red))
        total.backward()
        assert total.item() == pytest.approx(sum(w[n] * v for n, v in losses.items()), rel=1e-5)
        assert all(lt[n].grad.item() == pytest.approx(w[n]) for n in lt)   # weights are constants
        got.append(w)
    return got


def _assert_close(got, ref):
    for g, r in zip(got, ref, strict=True):
        assert g.keys() == r.keys()
        for n in r:
            assert g[n] == pytest.approx(r[n], rel=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"ema": 0.5, "kappa": 2.0, "base_generative": {"mae": 0.5,
                                                                                        "mlm/text": 2.0}}])
def test_matches_loop_reference_with_missing_names(kwargs):
    seq = _sequence()
    got = _run(AdaptiveWeighting(NAMES, **kwargs), seq)
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "base_generative"}
    _assert_close(got, _reference(seq, base=kwargs.get("base_generative"), **ref_kwargs))
    assert set(got[2]) == {"contrastive/image-text", "mae/image", "mlm/text"}
    assert got[2]["contrastive/image-text"] == pytest.approx(1.0)   # sole contrastive: mean = itself


def test_harder_pair_gets_more_weight():
    m = AdaptiveWeighting(NAMES[:2])
    sizes = {"contrastive/image-text": 64, "contrastive/audio-image": 64}
    losses = {"contrastive/image-text": torch.tensor(1.0), "contrastive/audio-image": torch.tensor(3.0)}
    _, w = m(losses, WeightingContext(step=0, batch_sizes=sizes))
    assert w["contrastive/audio-image"] > 1.0 > w["contrastive/image-text"]
    assert sum(w.values()) / 2 == pytest.approx(1.0)
    # same loss but fewer candidates (lower chance level) → relatively harder
    m2 = AdaptiveWeighting(NAMES[:2])
    same = {n: torch.tensor(2.0) for n in NAMES[:2]}
    _, w2 = m2(same, WeightingContext(step=0, batch_sizes={"contrastive/image-text": 8,
                                                           "contrastive/audio-image": 256}))
    assert w2["contrastive/image-text"] > w2["contrastive/audio-image"]


def test_weights_are_clipped():
    m = AdaptiveWeighting(NAMES, w_min=0.5, w_max=1.5, base_generative={"mae": 10.0, "mlm": 0.0})
    sizes = {n: 16 for n in CON}
    losses = {"contrastive/image-text": torch.tensor(0.01), "contrastive/audio-image": torch.tensor(5.0),
              "mae/image": torch.tensor(1.0), "mlm/text": torch.tensor(1.0)}
    _, w = m(losses, WeightingContext(step=0, batch_sizes=sizes, redundancy=0.5))
    assert w == {"contrastive/image-text": 0.5, "contrastive/audio-image": 1.5, "mae/image": 1.5,
                 "mlm/text": 0.5}


def test_redundancy_raises_generative_weight_and_generative_only_batch():
    m = AdaptiveWeighting(["mae/image", "mlm/text"], kappa=1.0, ema=0.0)
    z = torch.randn(8, 1).repeat(1, 4)
    red = float(feature_redundancy(z, z))
    _, w = m({"mae/image": torch.tensor(1.0)}, WeightingContext(step=0, batch_sizes={}, redundancy=red))
    assert w["mae/image"] == pytest.approx(2.0, rel=1e-4)
    _, w = m({"mae/image": torch.tensor(1.0)}, WeightingContext(step=1, batch_sizes={}, redundancy=0.0))
    assert w["mae/image"] == pytest.approx(1.0)


def test_state_dict_round_trip_and_eval_mode(tmp_path):
    seq = _sequence()
    full = _run(AdaptiveWeighting(NAMES), seq)
    a = AdaptiveWeighting(NAMES)
    _run(a, seq[:4])
    torch.save(a.state_dict(), tmp_path / "adaptive.pt")
    b = AdaptiveWeighting(NAMES)
    b.load_state_dict(torch.load(tmp_path / "adaptive.pt"))
    before = {k: v.clone() for k, v in b.state_dict().items()}
    b.eval()
    _run(b, seq[4:6])
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    b.train()
    _assert_close(_run(b, seq, start=4), full[4:])


@pytest.mark.parametrize("ctx, match", [
    (WeightingContext(step=0, batch_sizes={}), "batch_sizes"),
    (WeightingContext(step=0, batch_sizes={"contrastive/image-text": 1}), "N >= 2"),
    (WeightingContext(step=0, batch_sizes={"contrastive/image-text": 4}, redundancy=1.5), r"\[0, 1\]"),
    (WeightingContext(step=0, batch_sizes={"contrastive/image-text": 4}, redundancy=math.nan), "finite"),
])
def test_bad_context(ctx, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveWeighting(NAMES)({"contrastive/image-text": torch.tensor(1.0)}, ctx)


@pytest.mark.parametrize("kwargs", [{"ema": 1.0}, {"w_min": 2.0, "w_max": 1.0},
                                    {"base_generative": {"contrastive": 2.0}},
                                    {"base_generative": -1.0}, {"kappa": math.inf}])
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        AdaptiveWeighting(NAMES, **kwargs)


def test_no_parameters_and_repr():
    m = AdaptiveWeighting(NAMES)
    assert list(m.parameters()) == []
    assert "d_p = EMA(L_p/log N_p)" in repr(m) and "base_g·(1+κ·r)" in repr(m)
