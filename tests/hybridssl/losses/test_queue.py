from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybridssl.losses.queue import MomentumQueue, momentum_update


def test_initial_state():
    q = MomentumQueue(6, 4)
    torch.testing.assert_close(q.bank.norm(dim=1), torch.ones(6))
    assert int(q.ptr) == 0 and int(q.filled) == 0
    assert q.negatives().shape == (0, 4)
    assert {"bank", "ptr", "filled"} <= set(q.state_dict())


def test_bank_is_seeded_by_the_global_rng():
    torch.manual_seed(123)
    first = MomentumQueue(5, 3).bank.clone()
    torch.manual_seed(123)
    torch.testing.assert_close(MomentumQueue(5, 3).bank, first, rtol=0, atol=0)


def test_ring_buffer_against_a_slot_by_slot_reference():
    size, dim = 5, 3
    q = MomentumQueue(size, dim)
    ref_bank, ref_ptr, ref_filled = q.bank.clone(), 0, 0
    g = torch.Generator().manual_seed(0)
    for n in [2, 1, 4, 0, 3, 7, 5, 1, 12]:  # includes wraparound, an empty batch and batches > size
        x = torch.randn(n, dim, generator=g)
        q.enqueue(x)
        for row in x[max(0, n - size):]:  # only the last `size` rows of an oversized batch are kept
            ref_bank[ref_ptr] = row
            ref_ptr = (ref_ptr + 1) % size
            ref_filled = min(ref_filled + 1, size)
        torch.testing.assert_close(q.bank, ref_bank, rtol=0, atol=0)
        assert (int(q.ptr), int(q.filled)) == (ref_ptr, ref_filled)
        torch.testing.assert_close(q.negatives(), ref_bank[:ref_filled], rtol=0, atol=0)


def test_partial_fill_returns_only_real_entries():
    q = MomentumQueue(8, 2)
    x = torch.arange(6.0).reshape(3, 2)
    q.enqueue(x)
    torch.testing.assert_close(q.negatives(), x)


def test_enqueue_detaches_and_negatives_is_a_copy_safe_for_backward():
    q = MomentumQueue(4, 3)
    q.enqueue(F.normalize(torch.randn(4, 3), dim=1))
    w = torch.randn(2, 3, requires_grad=True)
    loss = (w @ q.negatives().T).logsumexp(dim=1).sum()  # the queue is saved for backward
    q.enqueue(w * 2)  # the trainer enqueues new keys before calling backward
    loss.backward()  # must not fail with an in-place modification error
    assert w.grad is not None
    assert not q.bank.requires_grad and q.bank.grad_fn is None
    torch.testing.assert_close(q.negatives()[:2], (w * 2).detach())


def test_state_dict_round_trip():
    q = MomentumQueue(4, 2)
    q.enqueue(torch.randn(3, 2))
    r = MomentumQueue(4, 2)
    r.load_state_dict(q.state_dict())
    torch.testing.assert_close(r.negatives(), q.negatives())
    assert int(r.ptr) == 3


@pytest.mark.parametrize("size, dim", [(0, 4), (4, 0), (-1, 2), (2.5, 2)])
def test_bad_construction(size, dim):
    with pytest.raises(ValueError):
        MomentumQueue(size, dim)


@pytest.mark.parametrize("x", [torch.randn(3, 5), torch.randn(4)])
def test_bad_enqueue(x):
    with pytest.raises(ValueError):
        MomentumQueue(4, 4).enqueue(x)


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("m", [0.0, 0.9, 0.995, 1.0])
def test_momentum_update_against_per_parameter_loop(m):
    target, source = _net(0), _net(1)
    source.train()(torch.randn(8, 3))  # move the batch-norm running stats / counter of the source
    before = {k: v.clone() for k, v in target.state_dict().items()}
    momentum_update(target, source, m)
    src = dict(source.named_parameters())
    for name, p in target.named_parameters():
        expected = m * before[name] + (1 - m) * src[name].detach()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
        assert p.grad_fn is None and p.requires_grad  # still a leaf parameter
    for name, buf in target.named_buffers():
        torch.testing.assert_close(buf, dict(source.named_buffers())[name], rtol=0, atol=0)


def test_momentum_update_rejects_bad_input():
    with pytest.raises(ValueError):
        momentum_update(_net(0), _net(1), 1.5)
    with pytest.raises(ValueError):
        momentum_update(_net(0), nn.Linear(3, 4), 0.9)
    with pytest.raises(ValueError):
        momentum_update(nn.Linear(3, 4), nn.Linear(3, 5), 0.9)
