"""Neighbour batches: the kNN, the greedy grouping, the step batches, their state, and the refusals."""

import numpy as np
import pytest
import torch

from hybridssl.config import load_config
from hybridssl.data.neighbour_batches import NeighbourBatching, greedy_groups, nearest_neighbours, neighbour_batching


def _clusters(n_clusters: int, per: int, dim: int = 16, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0][:n_clusters]  # orthonormal directions
    label = np.repeat(np.arange(n_clusters), per)
    x = centres[torch.from_numpy(label)] + noise * torch.randn(n_clusters * per, dim, generator=g)
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm], label[perm]


def test_nearest_neighbours_are_by_cosine_most_similar_first_and_never_the_item_itself():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 1.0], [-1.0, 0.0]])
    nn = nearest_neighbours(x, k=2, block=2)  # blocks smaller than n
    assert nn[0].tolist() == [1, 3] and nn[2].tolist() == [3, 1]
    assert all(i not in row for i, row in enumerate(nn))
    assert nearest_neighbours(x, k=10).shape == (5, 4)  # k capped at n − 1


def test_greedy_groups_are_the_clusters_and_use_every_item_once():
    x, label = _clusters(4, 8)
    groups = greedy_groups(nearest_neighbours(x, 16), 8, np.random.default_rng(0))
    assert groups.shape == (4, 8)
    assert sorted(groups.ravel().tolist()) == list(range(32))
    assert all(len(set(label[g])) == 1 for g in groups)


def test_fill_items_only_complete_groups_and_left_overs_are_dropped():
    x, _ = _clusters(2, 5)                           # 10 items with neighbours, groups of 4
    groups = greedy_groups(nearest_neighbours(x, 3), 4, np.random.default_rng(1), fill=np.arange(10, 13))
    flat = groups.ravel().tolist()
    assert groups.shape == (3, 4) and len(set(flat)) == 12 and set(flat) <= set(range(13))


class _Captions:
    def __init__(self, captions):
        self.captions = captions

    def __len__(self):
        return len(self.captions)

    def caption_at(self, i):
        return self.captions[i]


def _embed_words(captions):
    """A fixed caption embedding: a one-hot of the first word (so groups = first word)."""
    words = sorted({c.split()[0] for c in captions})
    return torch.eye(len(words))[[words.index(c.split()[0]) for c in captions]] + 0.01 * torch.rand(len(captions), len(words))


def test_refresh_groups_items_by_caption_neighbours_and_batches_are_seeded_by_step():
    colours = ["red", "blue", "green", "pink"]
    data = _Captions([f"{colours[i % 4]} thing {i}" for i in range(64)] + [None] * 8)
    nb = NeighbourBatching(data, batch_size=16, group=8, refresh=5, pool=1000, seed=3)
    assert not nb.due(0) and not nb.due(4) and nb.due(5)
    nb.refresh(7, _embed_words)
    assert nb.made_at == 5 and not nb.due(9) and nb.due(10)
    captioned = [g for g in nb.groups if all(data.caption_at(int(i)) for i in g)]
    assert len(captioned) >= 7 and all(len({data.caption_at(int(i)).split()[0] for i in g}) == 1 for g in captioned)
    b = nb.batch(12)
    assert len(b) == 16 and len(set(b)) == 16 and b == nb.batch(12)
    assert len({tuple(nb.batch(s)) for s in range(10, 20)}) > 5

    again = NeighbourBatching(data, batch_size=16, group=8, refresh=5, pool=1000, seed=3)
    again.load_state_dict(nb.state_dict())
    assert again.made_at == 5 and [again.batch(s) for s in range(8, 12)] == [nb.batch(s) for s in range(8, 12)]


def test_bad_settings_and_data_without_captions_are_refused():
    data = _Captions(["a b"] * 40)
    for kwargs, key in [({"group": 6}, "neighbour_group"), ({"refresh": 0}, "neighbour_refresh"),
                        ({"pool": 8}, "neighbour_pool")]:
        with pytest.raises(ValueError, match=key):
            NeighbourBatching(data, **{"batch_size": 16, "group": 8, "refresh": 5, "pool": 100, "seed": 0, **kwargs})
    nb = NeighbourBatching(_Captions([None] * 40), batch_size=16, group=8, refresh=5, pool=100, seed=0)
    with pytest.raises(ValueError, match="needs captions"):
        nb.refresh(5, _embed_words)
    with pytest.raises(ValueError, match="data.batches"):
        load_config("tiny", ["data.batches=nearest"])
    cfg = load_config("tiny", ["data.batches=neighbours"])
    with pytest.raises(ValueError, match="text tower"):
        neighbour_batching(cfg, data, None, ("image", "audio"))
    assert neighbour_batching(load_config("tiny"), data, None, ("image",)) is None
