from __future__ import annotations

import math

import pytest
import torch

from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.dwa import DynamicWeightAverage

NAMES = ["contrastive/image-text", "mae/image", "mae/audio"]


def _sequence(n_steps: int, drop: dict[str, range] | None = None) -> list[dict[str, float]]:
    """Known loss values: different decay rates plus a deterministic wiggle."""
    drop = drop or {}
    rates = {"contrastive/image-text": 0.02, "mae/image": 0.10, "mae/audio": 0.005}
    seq = []
    for t in range(n_steps):
        step = {n: (1.0 + i) * math.exp(-rates[n] * t) + 0.05 * math.sin(t + i)
                for i, n in enumerate(NAMES) if t not in drop.get(n, range(0))}
        seq.append(step)
    return seq


def _reference(seq: list[dict[str, float]], period: int, temp: float) -> list[dict[str, float]]:
    """Loop reference: per-name list of averages of the completed periods in which it appeared."""
    out = []
    for t, losses in enumerate(seq):
        p = t // period
        hist: dict[str, list[float]] = {}
        for q in range(p):
            for n in NAMES:
                vals = [seq[s][n] for s in range(q * period, (q + 1) * period) if n in seq[s]]
                if vals:
                    hist.setdefault(n, []).append(sum(vals) / len(vals))
        ready = [n for n in NAMES if n in losses and len(hist.get(n, [])) >= 2]
        ratios = {n: hist[n][-1] / hist[n][-2] for n in ready}
        denom = sum(math.exp(ratios[n] / temp) for n in ready)
        w = {n: (len(ready) * math.exp(ratios[n] / temp) / denom if n in ratios else 1.0)
             for n in NAMES if n in losses}
        out.append(w)
    return out


def _run(m: DynamicWeightAverage, seq, start: int = 0):
    got = []
    for t, vals in enumerate(seq[start:], start=start):
        losses = {n: torch.tensor(v) for n, v in vals.items()}
        total, w = m(losses, WeightingContext(step=t, batch_sizes={}))
        assert total.item() == pytest.approx(sum(w[n] * v for n, v in vals.items()), rel=1e-5)
        got.append(w)
    return got


def _assert_close(got, ref):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.keys() == r.keys()
        for n in r:
            assert g[n] == pytest.approx(r[n], rel=1e-5)


def test_weights_over_three_periods_match_formula():
    period, temp = 4, 2.0
    seq = _sequence(3 * period + 2)
    got = _run(DynamicWeightAverage(NAMES, period=period, temperature=temp), seq)
    ref = _reference(seq, period, temp)
    _assert_close(got, ref)
    assert all(v == 1.0 for w in got[: 2 * period] for v in w.values())
    # fast-decaying mae/image has the smallest ratio → smallest weight once DWA kicks in
    w = got[2 * period]
    assert w["mae/image"] < w["contrastive/image-text"] < w["mae/audio"]
    assert sum(w.values()) == pytest.approx(3.0)


def test_missing_names_and_absent_period():
    period = 3
    # audio absent for the whole period 1, and on a few scattered steps
    seq = _sequence(4 * period + 1, drop={"mae/audio": range(period, 2 * period + 1)})
    got = _run(DynamicWeightAverage(NAMES, period=period, temperature=1.5), seq)
    _assert_close(got, _reference(seq, period, 1.5))
    # in period 2 audio has only one completed period: weight 1, the two others share K=2
    w = got[2 * period + 1]
    assert w["mae/audio"] == 1.0
    assert w["mae/image"] + w["contrastive/image-text"] == pytest.approx(2.0)


def test_checkpoint_round_trip_continues_identically(tmp_path):
    period = 3
    seq = _sequence(4 * period)
    full = _run(DynamicWeightAverage(NAMES, period=period), seq)
    a = DynamicWeightAverage(NAMES, period=period)
    _run(a, seq[: 2 * period + 1])
    torch.save(a.state_dict(), tmp_path / "dwa.pt")
    b = DynamicWeightAverage(NAMES, period=period)
    b.load_state_dict(torch.load(tmp_path / "dwa.pt"))
    assert {"period_sum", "period_count", "avg_last", "avg_prev", "periods_done",
            "current_period"} <= set(b.state_dict())
    _assert_close(_run(b, seq, start=2 * period + 1), full[2 * period + 1:])


def test_eval_mode_does_not_update_state():
    m = DynamicWeightAverage(NAMES, period=2)
    _run(m, _sequence(5))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.eval()
    _run(m, _sequence(9)[5:], start=0)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("kwargs", [{"period": 0}, {"period": 2.5}, {"temperature": 0.0}])
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        DynamicWeightAverage(NAMES, **kwargs)


def test_bad_step_and_repr():
    m = DynamicWeightAverage(NAMES)
    with pytest.raises(ValueError, match="step"):
        m({"mae/image": torch.tensor(1.0)}, WeightingContext(step=-1, batch_sizes={}))
    assert "r_i = L̄_i(t−1)/L̄_i(t−2)" in repr(m) and "period=50" in repr(m)
