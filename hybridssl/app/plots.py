"""Evaluation figures as PNG files, drawn with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch, safe in headless processes and threads).

* :func:`plot_fraction_curves` — accuracy and macro-F1 (mean ± std over seeds, error bars) versus the
  label fraction (log x axis), one line per protocol, chance level dashed.
* :func:`plot_projection` — 2-D PCA projection of the joint embedding space, colour = class,
  marker = modality. :func:`pca_2d` centres X (N, D) and projects it on the first two right
  singular vectors of the centred matrix: with X − μ = U S Vᵀ, Y = (X − μ) V[:, :2] (N, 2); the
  sign of each component is fixed so that its largest-magnitude loading is positive.
* :func:`plot_retrieval_grid` — one row per query: the query, then its top-k results, each result
  framed green when correct (same key as the query) and red when wrong. Panels show an image, a
  log-mel spectrogram (M, T) or wrapped text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

CORRECT, WRONG, QUERY = "#1a9e3a", "#d62728", "#1f3b99"
MARKERS = {"image": "o", "text": "^", "audio": "s"}


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ----------------------------------------------------------------------------- accuracy vs fraction
def plot_fraction_curves(protocols: dict[str, dict[str, dict[str, Any]]], path: str | Path,
                         chance: float | None = None, title: str = "Low-label evaluation") -> Path:
    """``protocols[name][fraction as str] = {"accuracy": {"mean", "std"}, "macro_f1": {...}}``.

    Fractions whose metric is None (no seed could be evaluated) are left out of the line.
    """
    if not protocols:
        raise ValueError("plot_fraction_curves: no protocol to plot")
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "accuracy", "accuracy (%)"), (axes[1], "macro_f1", "macro-F1 (%)")):
        for name, by_fraction in protocols.items():
            pts = sorted((float(f), r[metric]["mean"], r[metric]["std"]) for f, r in by_fraction.items()
                         if r.get(metric) is not None)
            if not pts:
                continue
            x, mean, std = (np.array(v) for v in zip(*pts))
            ax.errorbar(100 * x, mean, yerr=std, marker="o", capsize=4, label=name)
        if chance is not None and metric == "accuracy":
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("labelled fraction of the pool (%)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 100)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- 2-D projection
def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (N, 2) of x (N, D), N >= 2, D >= 1 (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"pca_2d needs an (N >= 2, D >= 1) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("pca_2d: x contains NaN or inf")
    xc = x - x.mean(axis=0, keepdims=True)                        # (N, D)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)             # vt (min(N, D), D)
    v = vt[:2].T                                                  # (D, ≤2)
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    v = v * np.where(signs == 0, 1.0, signs)
    y = xc @ v                                                    # (N, ≤2)
    if y.shape[1] < 2:                                            # D == 1 or N == 2 with rank 1
        y = np.concatenate([y, np.zeros((y.shape[0], 2 - y.shape[1]))], axis=1)
    return y


def plot_projection(embeddings: dict[str, np.ndarray], labels: dict[str, np.ndarray], label_names: Sequence[str] | None,
                    path: str | Path, max_points: int = 3000, seed: int = 0,
                    title: str = "Joint embedding space (PCA)") -> Path:
    """PCA of all modalities' embeddings together; ``embeddings[m]`` (N_m, E), ``labels[m]`` (N_m,)."""
    mods = [m for m in embeddings if len(embeddings[m])]
    if not mods:
        raise ValueError("plot_projection: no embeddings")
    x = np.concatenate([embeddings[m] for m in mods])             # (N, E)
    y = np.concatenate([np.asarray(labels[m]) for m in mods])     # (N,)
    which = np.concatenate([np.full(len(embeddings[m]), i) for i, m in enumerate(mods)])  # (N,)
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), size=max_points, replace=False))
        x, y, which = x[keep], y[keep], which[keep]
    xy = pca_2d(x)                                                # (N, 2)
    classes = sorted(int(c) for c in np.unique(y))
    cmap = _class_colours(len(classes))
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    for i, m in enumerate(mods):
        for j, c in enumerate(classes):
            sel = (which == i) & (y == c)
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=10, alpha=0.6, c=[cmap[j]], marker=MARKERS.get(m, "o"),
                           linewidths=0)
    handles = [Line2D([], [], linestyle="", marker="o", color=cmap[j], label=_name(c, label_names))
               for j, c in enumerate(classes)]
    handles += [Line2D([], [], linestyle="", marker=MARKERS.get(m, "o"), color="black", label=m) for m in mods]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _class_colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _name(c: int, names: Sequence[str] | None) -> str:
    if c < 0:
        return "unlabelled"
    return names[c] if names is not None and c < len(names) else str(c)


# ----------------------------------------------------------------------------- retrieval grid
@dataclass
class Panel:
    """One cell: ``kind`` image (H, W, 3) uint8 | spectrogram (M, T) float | text str."""

    kind: str
    content: Any
    title: str = ""
    correct: bool | None = None   # None: the query (framed blue)


def _draw_panel(ax: Any, p: Panel) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if p.kind == "image":
        ax.imshow(np.asarray(p.content), interpolation="nearest")
    elif p.kind == "spectrogram":
        ax.imshow(np.asarray(p.content), origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    elif p.kind == "text":
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, textwrap.fill(str(p.content), 18)[:160], ha="center", va="center", fontsize=7, wrap=True)
    else:
        ax.text(0.5, 0.5, "n/a", ha="center", va="center")
    colour = QUERY if p.correct is None else (CORRECT if p.correct else WRONG)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4 if p.correct is not None else 2.5)
    ax.set_title(p.title, fontsize=7, color=colour)


def plot_retrieval_grid(rows: Sequence[Sequence[Panel]], path: str | Path,
                        title: str = "Retrieval examples (green = correct, red = wrong)") -> Path:
    """``rows[r] = [query panel, result 1, …, result k]``."""
    if not rows:
        raise ValueError("plot_retrieval_grid: no rows")
    n_cols = max(len(r) for r in rows)
    fig = Figure(figsize=(1.7 * n_cols, 1.9 * len(rows)))
    axes = np.asarray(fig.subplots(len(rows), n_cols, squeeze=False))
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                _draw_panel(axes[r, c], row[c])
            else:
                axes[r, c].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
