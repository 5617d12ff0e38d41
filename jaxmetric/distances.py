"""Pairwise distance and similarity matrices.

All functions take ``x`` [N, D] and optionally ``y`` [M, D] (``y=None`` means
``y = x``), compute in float32 (or float64 when given float64), and return an
[N, M] matrix. They are pure and jit-compatible; ``metric`` is static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks

DISTANCE_METRICS = ("euclidean", "squared_euclidean", "cosine")
SIMILARITY_METRICS = ("cosine", "dot")

# Below this squared distance, the euclidean distance is taken as exactly 0
# with a zero gradient: sqrt has an infinite derivative at 0, and the
# matmul form |x|^2 + |y|^2 - 2 x.y only reaches ~1e-7 relative accuracy in
# float32 anyway.
_SQRT_EPS = 1e-12
# Rows with a norm below this are treated as zero vectors by `l2_normalize`.
_NORM_EPS = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = _NORM_EPS) -> jax.Array:
    """Scales rows to unit L2 norm: x / max(||x||, eps).

    Zero rows stay zero (their cosine similarity to anything is 0) and the
    gradient stays finite, unlike ``x / ||x||``.

    Args:
      x: array of any shape; normalised along ``axis``.
      axis: the axis holding the feature dimension.
      eps: smallest norm divided by.

    Returns:
      An array of the shape of ``x``.
    """
    sq_norm = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq_norm, eps * eps))


def safe_sqrt(x: jax.Array, eps: float = _SQRT_EPS) -> jax.Array:
    """sqrt(x) for x >= 0 with value 0 and gradient 0 wherever x <= eps."""
    positive = x > eps
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _prepare(x: jax.Array, y: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    x = _checks.check_embeddings(x, "x")
    if y is None:
        return x, x
    y = _checks.check_embeddings(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(
            f"`y` must have the feature dimension of `x` ({x.shape[1]}), got shape {y.shape}."
        )
    return x, y


def pairwise_similarities(
    x: jax.Array, y: jax.Array | None = None, *, metric: str = "cosine"
) -> jax.Array:
    """Pairwise similarity matrix.

    - ``"cosine"``: S_ij = <x_i, y_j> / (max(||x_i||, eps) max(||y_j||, eps))
    - ``"dot"``:    S_ij = <x_i, y_j>

    Args:
      x: [N, D] floating array.
      y: [M, D] floating array, or None for ``y = x``.
      metric: "cosine" or "dot".

    Returns:
      [N, M] float32 similarities.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
      >>> jaxmetric.pairwise_similarities(x).tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    _checks.check_choice(metric, SIMILARITY_METRICS, "metric")
    x, y = _prepare(x, y)
    if metric == "cosine":
        x, y = l2_normalize(x), l2_normalize(y)
    return x @ y.T


def pairwise_distances(
    x: jax.Array, y: jax.Array | None = None, *, metric: str = "euclidean"
) -> jax.Array:
    """Pairwise distance matrix.

    - ``"squared_euclidean"``: D_ij = max(||x_i||^2 + ||y_j||^2 - 2 <x_i, y_j>, 0)
    - ``"euclidean"``: D_ij = sqrt of the above, with value and gradient 0 where
      the squared distance is below 1e-12 (so identical rows give a finite,
      zero gradient instead of the NaN of a plain ``sqrt``).
    - ``"cosine"``: D_ij = 1 - cos(x_i, y_j), zero rows having cosine 0.

    The matmul form costs one [N, D] x [D, M] GEMM and no [N, M, D] temporary.
    When ``y`` is None the diagonal is set to exactly 0.

    Args:
      x: [N, D] floating array.
      y: [M, D] floating array, or None for ``y = x``.
      metric: "euclidean", "squared_euclidean" or "cosine".

    Returns:
      [N, M] float32 distances, >= 0.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
      >>> jaxmetric.pairwise_distances(x).tolist()
      [[0.0, 5.0], [5.0, 0.0]]
    """
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    self_distances = y is None
    x, y = _prepare(x, y)
    if metric == "cosine":
        dist = 1.0 - l2_normalize(x) @ l2_normalize(y).T
        dist = jnp.maximum(dist, 0.0)
    else:
        sq_x = jnp.sum(jnp.square(x), axis=1)
        sq_y = jnp.sum(jnp.square(y), axis=1)
        dist = jnp.maximum(sq_x[:, None] + sq_y[None, :] - 2.0 * (x @ y.T), 0.0)
    if self_distances:
        dist = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, dist)
    if metric == "euclidean":
        dist = safe_sqrt(dist)
    return dist


def paired_distances(x: jax.Array, y: jax.Array, *, metric: str = "euclidean") -> jax.Array:
    """Distances between matching rows: d(x_i, y_i), the diagonal of
    ``pairwise_distances(x, y)`` without the [N, M] matrix.

    Computed from the difference ``x_i - y_i`` (cosine: from the normalised
    rows), which is exact where the matmul form loses ~1e-7 relative
    accuracy; euclidean has value and gradient 0 for identical rows. A loss
    that mines its pairs on a (stop-gradient) distance matrix and evaluates
    only the mined pairs with this function has an O(N D) backward pass
    instead of the two [N, M] GEMMs of the matrix.

    Args:
      x: [N, D] floating array.
      y: [N, D] floating array.
      metric: "euclidean", "squared_euclidean" or "cosine".

    Returns:
      [N] float32 distances, >= 0.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0]])
      >>> y = jnp.array([[3.0, 4.0], [0.0, 1.0]])
      >>> jaxmetric.distances.paired_distances(x, y, metric="cosine").tolist()
      [1.0, 1.0]
    """
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    x, y = _prepare(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`y` must have the rows of `x` ({x.shape[0]}), got shape {y.shape}.")
    if metric == "cosine":
        return jnp.maximum(1.0 - jnp.sum(l2_normalize(x) * l2_normalize(y), axis=1), 0.0)
    sq = jnp.sum(jnp.square(x - y), axis=1)
    return safe_sqrt(sq) if metric == "euclidean" else sq
