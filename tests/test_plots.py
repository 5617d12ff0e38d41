"""jaxmetric.plots: the embedding map PNG."""

from __future__ import annotations

import numpy as np


def test_embedding_map_png(tmp_path):
    from jaxmetric.plots import embedding_map_png

    rng = np.random.default_rng(0)  # 60 rows of 3 Gaussian classes in 8-D.
    centers = rng.normal(size=(3, 8)) * 2.0
    y = rng.integers(0, 3, 60)
    x = (centers[y] + rng.normal(size=(60, 8))).astype(np.float32)
    for method in ("tsne", "pca"):
        path = embedding_map_png(x, y, tmp_path / f"sub/{method}.png", method=method)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
