"""Cross-modal retrieval metrics (Recall@K, median/mean rank) with their exact chance levels.

Shapes: ``queries`` (Q, D), ``gallery`` (G, D); both are re-normalised here (defensively), so the
similarity is the cosine ``s_qg = <q, g> / (|q| |g|)``.

Correctness by key. Gallery item ``g`` is *correct* for query ``q`` when ``gallery_keys[g] ==
query_keys[q]``. Duplicates (identical captions, several clips of the same scene) therefore all
count as correct: a query with ``m`` correct items is answered by whichever of them ranks first.
A query whose key is absent from the gallery (``m = 0``) is an error (ValueError): the caller must
build galleries that contain every query's key.

Rank with pessimistic ties. With ``s* = max_{g correct} s_qg`` the rank of the first correct item is

    rank_q = 1 + #{g : g not correct and s_qg >= s*}

so an incorrect item that *ties* with the best correct one is ranked ahead of it (a collapsed model
that maps everything to one vector gets the worst rank, not the best). ``R@K`` is the percentage
of queries with ``rank_q <= K``.

Chance levels (random ranking, i.e. a uniformly random permutation of the gallery):

    chance R@K (query q)  = 1 - C(G - m_q, K) / C(G, K)     (exact; averaged over queries, in %)
    E[first-hit rank]     = (G + 1) / (m_q + 1)             (exact expectation)

``chance_median_rank`` is the median over queries of ``(G + 1) / (m_q + 1)``, an approximation of
the median rank under random ranking (it is the per-query *expected* rank, not the median of the
rank distribution); ``chance_mean_rank`` is the mean over queries of the same quantity, which is
the exact expected mean rank.

Memory: similarities are computed in float64 for ``chunk_size`` queries at a time, i.e.
``chunk_size * G * 8`` bytes (100 MB for the default 256 and G = 50k) plus two boolean masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_CHUNK = 256


def unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a (N, D) finite, non-empty array and return it L2-normalised in float64."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)             # (N, 1)
    if np.any(norms == 0):
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero rows: cannot L2-normalise")
    return x / norms                                              # (N, D)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if len(ks) == 0:
        raise ValueError("ks must contain at least one K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every K in ks must be an integer >= 1, got {k!r}")
    return tuple(int(k) for k in ks)


def _encode_keys(query_keys: Sequence[str], gallery_keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map keys to integer ids; return (query ids (Q,), gallery ids (G,), m per query (Q,))."""
    vocab: dict[str, int] = {}
    gid = np.fromiter((vocab.setdefault(k, len(vocab)) for k in gallery_keys), dtype=np.int64,
                      count=len(gallery_keys))                   # (G,)
    qid = np.fromiter((vocab.get(k, -1) for k in query_keys), dtype=np.int64,
                      count=len(query_keys))                     # (Q,)
    missing = np.flatnonzero(qid < 0)
    if missing.size:
        examples = [query_keys[i] for i in missing[:3]]
        raise ValueError(f"{missing.size} queries have no correct item in the gallery (m = 0), "
                         f"e.g. keys {examples}; every query key must appear in gallery_keys")
    m = np.bincount(gid, minlength=len(vocab))[qid]               # (Q,)
    return qid, gid, m


def _validate(queries: np.ndarray, gallery: np.ndarray, query_keys: Sequence[str],
              gallery_keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    q = unit_rows(queries, "queries")                            # (Q, D)
    g = unit_rows(gallery, "gallery")                            # (G, D)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding dims differ: queries D={q.shape[1]}, gallery D={g.shape[1]}")
    if len(query_keys) != q.shape[0]:
        raise ValueError(f"len(query_keys)={len(query_keys)} != number of queries {q.shape[0]}")
    if len(gallery_keys) != g.shape[0]:
        raise ValueError(f"len(gallery_keys)={len(gallery_keys)} != gallery size {g.shape[0]}")
    return q, g


def first_correct_ranks(queries: np.ndarray, gallery: np.ndarray, query_keys: Sequence[str],
                        gallery_keys: Sequence[str], chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """1-based rank of the best correct gallery item per query (pessimistic ties) and m per query.

    Returns ``(ranks (Q,) int64, m (Q,) int64)``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    q, g = _validate(queries, gallery, query_keys, gallery_keys)
    qid, gid, m = _encode_keys(query_keys, gallery_keys)
    ranks = np.empty(q.shape[0], dtype=np.int64)                  # (Q,)
    for start in range(0, q.shape[0], chunk_size):
        stop = min(start + chunk_size, q.shape[0])
        sims = q[start:stop] @ g.T                                # (c, G)
        correct = qid[start:stop, None] == gid[None, :]           # (c, G)
        best = np.where(correct, sims, -np.inf).max(axis=1)       # (c,)
        ahead = ~correct & (sims >= best[:, None])                # (c, G)
        ranks[start:stop] = 1 + ahead.sum(axis=1)
    return ranks, m


def chance_recall_at_k(n_gallery: int, m: np.ndarray, k: int) -> np.ndarray:
    """Per query P(first correct item within the top K of a random permutation), in [0, 1].

    ``1 - C(G - m, K) / C(G, K) = 1 - prod_{i<K} (G - m - i) / (G - i)``; K is clipped to G.
    """
    m = np.asarray(m, dtype=np.float64)                           # (Q,)
    miss = np.ones_like(m)                                        # (Q,) P(no correct in top K)
    for i in range(min(k, n_gallery)):
        miss *= np.clip(n_gallery - m - i, 0.0, None) / (n_gallery - i)
    return 1.0 - miss


def retrieval_metrics(queries: np.ndarray, gallery: np.ndarray, query_keys: Sequence[str],
                      gallery_keys: Sequence[str], ks: Sequence[int] = (1, 5, 10),
                      chunk_size: int = DEFAULT_CHUNK) -> dict[str, float]:
    """R@K (%), median/mean rank, n_queries, and chance_R@K (%), chance_median_rank, chance_mean_rank."""
    ks = _check_ks(ks)
    ranks, m = first_correct_ranks(queries, gallery, query_keys, gallery_keys, chunk_size)
    n_gallery = len(gallery_keys)
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = 100.0 * float(np.mean(ranks <= k))
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    out["n_queries"] = int(ranks.shape[0])
    for k in ks:
        out[f"chance_R@{k}"] = 100.0 * float(np.mean(chance_recall_at_k(n_gallery, m, k)))
    expected_rank = (n_gallery + 1) / (m + 1.0)                   # (Q,)
    out["chance_median_rank"] = float(np.median(expected_rank))
    out["chance_mean_rank"] = float(np.mean(expected_rank))
    return out


def bidirectional_retrieval(a: np.ndarray, b: np.ndarray, keys: Sequence[str], names: tuple[str, str],
                            ks: Sequence[int] = (1, 5, 10),
                            chunk_size: int = DEFAULT_CHUNK) -> dict[str, dict[str, float]]:
    """Retrieval both ways for paired embeddings ``a[i] <-> b[i]`` sharing ``keys[i]``.

    Returns ``{"A->B": metrics(a queries, b gallery), "B->A": metrics(b queries, a gallery)}``.
    """
    if len(names) != 2:
        raise ValueError(f"names must be a pair (name_a, name_b), got {names!r}")
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.ndim != 2 or b_arr.ndim != 2:
        raise ValueError(f"a and b must be 2-D, got shapes {a_arr.shape} and {b_arr.shape}")
    if a_arr.shape[0] != b_arr.shape[0]:
        raise ValueError(f"a and b must be paired row by row, got {a_arr.shape[0]} vs {b_arr.shape[0]} rows")
    if len(keys) != a_arr.shape[0]:
        raise ValueError(f"len(keys)={len(keys)} != number of pairs {a_arr.shape[0]}")
    na, nb = names
    return {
        f"{na}->{nb}": retrieval_metrics(a_arr, b_arr, keys, keys, ks, chunk_size),
        f"{nb}->{na}": retrieval_metrics(b_arr, a_arr, keys, keys, ks, chunk_size),
    }
