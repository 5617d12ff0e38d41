"""A 2-D picture of embeddings, coloured by label (for ``jaxmetric evaluate``).

Uses matplotlib's object API on the Agg canvas (no pyplot, no global backend
change, no display needed) and scikit-learn's t-SNE or PCA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmetric import _extras

# Both are imported where they are used (scikit-learn is slow to import).
_extras.require("jaxmetric.plots", "matplotlib", "sklearn")

METHODS = ("tsne", "pca")


def project_2d(
    embeddings, *, method: str = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """[N, D] embeddings -> [N, 2] with t-SNE (van der Maaten & Hinton 2008) or PCA.

    Args:
      embeddings: [N, D] array (N >= 2).
      method: "tsne" (``sklearn.manifold.TSNE``, PCA initialisation, perplexity
        capped at (N - 1) / 3) or "pca".
      seed: random state of t-SNE.
      perplexity: t-SNE perplexity.

    Returns:
      [N, 2] float64 coordinates.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"`embeddings` must be [N >= 2, D], got shape {x.shape}.")
    if method not in METHODS:
        raise ValueError(f"Unknown `method` {method!r}; expected one of {METHODS}.")
    if x.shape[1] <= 2:
        return np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, max(1.0, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def embedding_map_png(
    embeddings,
    labels,
    path: str | Path,
    *,
    method: str = "tsne",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Writes a scatter plot of the embeddings projected to 2-D, coloured by label.

    Args:
      embeddings: [N, D] array.
      labels: [N] int labels (colours; a legend when there are at most 20).
      path: the PNG file to write (parent folders are created).
      method: "tsne" or "pca" (see `project_2d`).
      max_points: at most this many rows, drawn uniformly with ``seed``.
      seed: seed of the subsample and of t-SNE.
      title: plot title; defaults to the method and the number of points.

    Returns:
      The path written.
    """
    x = np.asarray(embeddings)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"`embeddings` must be 2-D [N, D], got shape {x.shape}.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`labels` must have shape ({x.shape[0]},), got {y.shape}.")
    if max_points < 2:
        raise ValueError(f"`max_points` must be >= 2, got {max_points!r}.")
    if x.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x, y = x[keep], y[keep]
    xy = project_2d(x, method=method, seed=seed)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    classes = np.unique(y)
    cmap = "tab10" if classes.size <= 10 else "tab20" if classes.size <= 20 else "viridis"
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap=cmap, s=6, alpha=0.8, linewidths=0)
    if classes.size <= 20:
        ax.legend(*scatter.legend_elements(), title="label", loc="best", fontsize="small")
    ax.set_title(title or f"{method.upper()} of {x.shape[0]} embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
