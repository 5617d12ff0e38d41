"""Classifiers on frozen embeddings: the k-nearest-neighbour vote and the linear probe.

The neighbours come from `jaxmetric.search.knn`, in blocks of test rows like
the retrieval metrics (only a [block_size, N] slice of the distances exists
at a time); the linear probe is
a full-batch softmax regression trained under ``jit`` with early stopping.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmetric import _checks
from jaxmetric.metrics import _common
from jaxmetric.search import knn

__all__ = ["knn_accuracy", "knn_predict", "linear_probe_accuracy"]


@functools.partial(jax.jit, static_argnames=("k", "metric", "block_size"))
def _knn(query, reference, *, k, metric, block_size):
    num_query = query.shape[0]

    def body(q):
        return knn(q, reference, k, metric=metric, block_size=reference.shape[0])

    dist, idx = jax.lax.map(body, _common.blocks(_common.pad_rows(query, block_size), block_size))
    return dist.reshape(-1, k)[:num_query], idx.reshape(-1, k)[:num_query]


def _num_classes(*label_arrays: jax.Array) -> int:
    return int(max(int(jnp.max(lab)) for lab in label_arrays)) + 1


def knn_predict(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    *,
    k: int = 10,
    metric: str = "cosine",
    weighted: bool = False,
    temperature: float = 0.07,
    num_classes: int | None = None,
    block_size: int | None = None,
) -> jax.Array:
    """Class predictions [N_test] of a k-nearest-neighbour vote; see `knn_accuracy`.

    ``num_classes`` is the number of vote bins (None: the largest training
    label + 1); the other arguments are those of `knn_accuracy`.
    """
    _common.check_metric(metric)
    train_emb = _common.check_embeddings(train_emb, "train_emb")
    block_size = _common.query_block_size(block_size, train_emb.shape[0])
    train_labels = _common.check_labels(train_labels, train_emb.shape[0], "train_labels")
    test_emb = _common.check_embeddings(test_emb, "test_emb")
    _common.check_same_dim(test_emb, "test_emb", train_emb, "train_emb")
    k = _checks.check_int(k, "k", high=train_emb.shape[0])
    if weighted:
        _checks.check_positive(temperature, "temperature")
    if num_classes is None:
        num_classes = _num_classes(train_labels)
    dist, idx = _knn(
        test_emb,
        train_emb,
        k=k,
        metric=metric,
        block_size=min(block_size, test_emb.shape[0]),
    )
    votes = jax.nn.one_hot(train_labels[idx], num_classes)  # [N, k, C]
    if weighted:
        # exp(-d / T): for cosine, exp((cos - 1) / T), the DINO weights up to a constant.
        votes = votes * jnp.exp(-(dist - dist[:, :1]) / temperature)[:, :, None]
    # argmax picks the smallest class among tied votes (as scikit-learn does).
    return jnp.argmax(jnp.sum(votes, axis=1), axis=1)


def knn_accuracy(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    k: int = 10,
    metric: str = "cosine",
    weighted: bool = False,
    temperature: float = 0.07,
    block_size: int | None = None,
) -> float:
    r"""Accuracy of a k-nearest-neighbour classifier on frozen embeddings.

    Each test row takes its ``k`` nearest training rows (ties: lower training
    index first) and predicts the class with the largest vote

    .. math::

        \hat y = \arg\max_c \sum_{j \in kNN} w_j [y_j = c], \qquad
        w_j = 1 \;\text{(majority vote)} \quad\text{or}\quad
        w_j = \exp(-d_j / T) \;\text{(weighted)},

    the smallest class winning a tie of votes (scikit-learn's
    ``KNeighborsClassifier`` does the same). With ``metric="cosine"``,
    ``d = 1 - cos`` and the weights are ``exp(cos / T)`` up to a common factor:
    the weighted kNN monitor of InstDisc (Wu et al. 2018) and DINO (Caron et
    al. 2021; k=20, T=0.07 there).

    Args:
      train_emb: [N, D] float embeddings of the labelled set.
      train_labels: [N] non-negative int labels.
      test_emb: [N_test, D] float embeddings to classify.
      test_labels: [N_test] int labels.
      k: neighbours per test row, in [1, N].
      metric: "cosine" or "euclidean".
      weighted: False for a majority vote, True for exp(-d / T) weights.
      temperature: T of the weighted vote, > 0.
      block_size: test rows per block; None: about
        2^24 distances per block.

    Returns:
      The fraction of test rows whose predicted class equals their label.

    Reference:
      Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
      Discrimination", CVPR 2018; Caron et al., "Emerging Properties in
      Self-Supervised Vision Transformers", ICCV 2021.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import knn_accuracy
      >>> x = jnp.array([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.2]])
      >>> y = jnp.array([0, 0, 1, 1])
      >>> knn_accuracy(x, y, x + 0.05, y, k=1)
      1.0
    """
    test_emb = _common.check_embeddings(test_emb, "test_emb")
    test_labels = _common.check_labels(test_labels, test_emb.shape[0], "test_labels")
    train_labels_ = _checks.check_labels(
        train_labels, jnp.asarray(train_labels).shape[0], "train_labels"
    )
    pred = knn_predict(
        train_emb,
        train_labels,
        test_emb,
        k=k,
        metric=metric,
        weighted=weighted,
        temperature=temperature,
        num_classes=_num_classes(train_labels_, test_labels),
        block_size=block_size,
    )
    return float(jnp.mean(pred == test_labels))


class _ProbeState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    best_params: dict
    best_score: jax.Array  # (val accuracy, -val loss) compared lexicographically.
    best_neg_loss: jax.Array
    evals: jax.Array
    since_best: jax.Array


def _probe_logits(params, x):
    return x @ params["w"] + params["b"]


@functools.partial(
    jax.jit,
    static_argnames=("num_classes", "learning_rate", "max_steps", "eval_every", "patience"),
)
def _train_probe(
    x_tr, y_tr, x_val, y_val, l2, *, num_classes, learning_rate, max_steps, eval_every, patience
):
    dim = x_tr.shape[1]
    params = {
        "w": jnp.zeros((dim, num_classes), jnp.float32),
        "b": jnp.zeros((num_classes,), jnp.float32),
    }
    opt = optax.adam(learning_rate)

    def loss_fn(p):
        ce = optax.softmax_cross_entropy_with_integer_labels(_probe_logits(p, x_tr), y_tr)
        return jnp.mean(ce) + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

    def step(_, carry):
        p, s = carry
        grads = jax.grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def evaluate(p):
        logits = _probe_logits(p, x_val)
        acc = jnp.mean(jnp.argmax(logits, axis=1) == y_val)
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_val))
        return acc, -loss

    max_evals = max(1, max_steps // eval_every)

    def cond(st: _ProbeState):
        return (st.evals < max_evals) & (st.since_best < patience)

    def body(st: _ProbeState):
        p, s = jax.lax.fori_loop(0, eval_every, step, (st.params, st.opt_state))
        acc, neg_loss = evaluate(p)
        better = (acc > st.best_score) | ((acc == st.best_score) & (neg_loss > st.best_neg_loss))
        best = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, st.best_params)
        return _ProbeState(
            p,
            s,
            best,
            jnp.where(better, acc, st.best_score),
            jnp.where(better, neg_loss, st.best_neg_loss),
            st.evals + 1,
            jnp.where(better, 0, st.since_best + 1),
        )

    acc0, neg_loss0 = evaluate(params)
    init = _ProbeState(
        params, opt.init(params), params, acc0, neg_loss0, jnp.array(0), jnp.array(0)
    )
    final = jax.lax.while_loop(cond, body, init)
    return final.best_params, final.evals * eval_every


def linear_probe_accuracy(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    l2: float = 1e-4,
    learning_rate: float = 0.01,
    max_steps: int = 2000,
    eval_every: int = 20,
    patience: int = 10,
    val_fraction: float = 0.1,
    standardize: bool = True,
    seed: int = 0,
) -> float:
    r"""Test accuracy of an L2-regularised softmax regression on frozen embeddings.

    The training rows are shuffled with ``seed`` and split: ``val_fraction``
    of them (at least one) form a validation split, the rest fit

    .. math::

        \min_{W, b}\; \frac{1}{n}\sum_i \mathrm{CE}(W^\top x_i + b,\; y_i)
        + \frac{\lambda}{2}\lVert W \rVert_2^2

    with full-batch Adam from zero weights. Every ``eval_every`` steps the
    validation accuracy is measured (ties: lower validation loss); the best
    weights so far are kept, and training stops after ``patience``
    evaluations without improvement or after ``max_steps`` steps. The test
    accuracy of the kept weights is returned. With ``standardize``, features
    are centred and scaled by the mean and standard deviation of the fitting
    split. The result is deterministic given ``seed`` (full batch; the only
    randomness is the split).

    This is the "linear evaluation protocol" of SimCLR / MoCo, on fixed
    features and without augmentation. ``l2 = 1 / (C n)`` matches
    scikit-learn's ``LogisticRegression(C=C)`` objective.

    Args:
      train_emb: [N, D] float embeddings of the labelled set.
      train_labels: [N] non-negative int labels.
      test_emb: [N_test, D] float embeddings.
      test_labels: [N_test] int labels.
      l2: lambda, >= 0.
      learning_rate: Adam step size, > 0.
      max_steps: most optimisation steps.
      eval_every: steps between validation checks.
      patience: validation checks without improvement before stopping.
      val_fraction: share of the training rows held out, in (0, 1).
      standardize: centre and scale the features first.
      seed: seed of the train / validation split.

    Returns:
      The test accuracy in [0, 1].

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations" (linear evaluation), ICML 2020.
    """
    train_emb = _common.check_embeddings(train_emb, "train_emb")
    train_labels = _common.check_labels(train_labels, train_emb.shape[0], "train_labels")
    test_emb = _common.check_embeddings(test_emb, "test_emb")
    test_labels = _common.check_labels(test_labels, test_emb.shape[0], "test_labels")
    _common.check_same_dim(test_emb, "test_emb", train_emb, "train_emb")
    _checks.check_non_negative(l2, "l2")
    _checks.check_positive(learning_rate, "learning_rate")
    max_steps = _checks.check_int(max_steps, "max_steps")
    eval_every = _checks.check_int(eval_every, "eval_every")
    patience = _checks.check_int(patience, "patience")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction!r}.")
    n = train_emb.shape[0]
    if n < 2:
        raise ValueError(f"`train_emb` needs at least 2 rows for a validation split, got {n}.")
    num_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = jax.random.permutation(jax.random.key(seed), n)
    val_idx, fit_idx = perm[:num_val], perm[num_val:]
    x_fit, y_fit = train_emb[fit_idx], train_labels[fit_idx]
    x_val, y_val = train_emb[val_idx], train_labels[val_idx]
    x_test = test_emb
    if standardize:
        mean = jnp.mean(x_fit, axis=0)
        std = jnp.std(x_fit, axis=0)
        std = jnp.where(std > 1e-12, std, 1.0)
        x_fit, x_val, x_test = ((x - mean) / std for x in (x_fit, x_val, x_test))
    params, _ = _train_probe(
        x_fit,
        y_fit,
        x_val,
        y_val,
        jnp.float32(l2),
        num_classes=_num_classes(train_labels, test_labels),
        learning_rate=float(learning_rate),
        max_steps=max_steps,
        eval_every=eval_every,
        patience=patience,
    )
    pred = jnp.argmax(_probe_logits(params, x_test), axis=1)
    return float(jnp.mean(pred == test_labels))
