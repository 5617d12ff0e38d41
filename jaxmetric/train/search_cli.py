"""``jaxmetric index | search | verify``: what a retrieval or verification user does after training.

- ``jaxmetric index --workdir W [--split test] --out PATH`` embeds a split
  with the run's latest checkpoint (evaluation mode, as ``jaxmetric
  evaluate``) and saves a `jaxmetric.search.Index` of the embeddings with
  their labels (atomically);
- ``jaxmetric search --index PATH --queries Q.npy [--k 10]`` (or
  ``--workdir W --split S`` to embed the queries with the run) prints each
  query's ``k`` nearest gallery rows as JSON lines: ``{"query", "indices",
  "distances", "labels"}``;
- ``jaxmetric verify --workdir W [--target_far 1e-3]`` calibrates a
  threshold at the target FAR on the pairs of one set of identities and
  reports TAR and FAR at it on the pairs of another (with bootstrap
  intervals from the calibration pairs), and writes the result into
  ``W/metrics.json`` under ``"verify"``. ``--calibrate_on train`` calibrates
  on the train split and tests on the held-out split; the default,
  ``heldout``, splits the held-out identities in two halves (by a seeded
  permutation of the labels), so neither set was seen in training, as the
  open-set protocols of face verification do.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

import ml_collections
import numpy as np

from jaxmetric import metrics
from jaxmetric.search import Index
from jaxmetric.train import evaluate_cli

SPLITS = ("train", "test")
CALIBRATION = ("heldout", "train")
VERIFY_KEY = "verify"


def embed_workdir_split(
    workdir: str, split: str = "test", config: ml_collections.ConfigDict | None = None
) -> tuple[ml_collections.ConfigDict, int, np.ndarray, np.ndarray]:
    """(config, step, embeddings z [N, D], labels [N]) of one split of
    ``config.dataset`` through the latest checkpoint of ``workdir``, with a
    progress bar."""
    from jaxmetric.data import sources
    from jaxmetric.train.evaluate import embed_split
    from jaxmetric.train.steps import make_embed_fn

    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    config, graphdef, state = evaluate_cli.restore(workdir, config)
    train, test = sources.load(config.dataset)
    _, z, y, _ = embed_split(
        config,
        make_embed_fn(config, graphdef),
        state.params,
        state.batch_stats,
        train if split == "train" else test,
        progress=f"embedding {split}",
    )
    return config, int(state.step), z, y


def index_workdir(
    workdir: str,
    out: str,
    *,
    split: str = "test",
    config: ml_collections.ConfigDict | None = None,
) -> Index:
    """Embeds ``split`` with the run in ``workdir`` and saves an `Index`
    (cosine, the trainer's metric) of it, with its labels, to ``out``."""
    _, _, z, y = embed_workdir_split(workdir, split, config)
    index = Index(z.shape[1], metric="cosine")
    index.add(z, labels=y)
    index.save(out)
    return index


def search_index(index: Index, queries: np.ndarray, k: int) -> list[dict[str, Any]]:
    """One dict per query: its ``k`` nearest gallery rows (``indices``,
    ``distances`` ascending, ``labels`` or None)."""
    dist, idx, labels = index.search(queries, k)
    return [
        {
            "query": i,
            "indices": idx[i].tolist(),
            "distances": [float(d) for d in dist[i]],
            "labels": None if labels is None else labels[i].tolist(),
        }
        for i in range(len(idx))
    ]


def _pair_distances(z: np.ndarray, y: np.ndarray, num_pairs: int, seed: int):
    """Cosine distances 1 - cos of sampled genuine / impostor pairs, and
    whether each is genuine; every pair where there are few."""
    n = len(y)
    every = n * (n - 1) // 2 <= 2 * num_pairs
    scores, same = metrics.verification_pairs(
        z, y, metric="cosine", num_pairs=None if every else num_pairs, seed=seed
    )
    return 1.0 - np.asarray(scores, np.float64), np.asarray(same)


def _identity_halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row masks of two disjoint halves of the identities in ``y``."""
    classes = np.random.default_rng(seed).permutation(np.unique(y))
    first = np.isin(y, classes[: len(classes) // 2])
    return first, ~first


def verify_workdir(
    workdir: str,
    *,
    target_far: float = 1e-3,
    calibrate_on: str = "heldout",
    num_pairs: int = 100_000,
    config: ml_collections.ConfigDict | None = None,
    print_result: bool = True,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Calibrates a verification threshold at ``target_far`` and tests it.

    Args:
      workdir: a ``jaxmetric train`` workdir.
      target_far: the false accept rate the threshold is chosen for, in (0, 1).
      calibrate_on: "heldout" (two disjoint halves of the held-out
        identities: calibrate on one, test on the other) or "train"
        (calibrate on the train split, test on the held-out split).
      num_pairs: genuine and impostor pairs sampled per set (every pair
        where a set has fewer).
      config: the run's config; None reads the one saved in the checkpoint.
      print_result: print a summary.
      out: where it goes (None: ``sys.stdout`` at call time).

    Returns:
      The ``"verify"`` section written into ``<workdir>/metrics.json``: the
      threshold (cosine distance; accept iff distance <= threshold), the
      calibration pairs' FAR / TAR with their bootstrap intervals, and the
      test pairs' FAR / TAR at that threshold, with ``far_in_interval``.
    """
    if calibrate_on not in CALIBRATION:
        raise ValueError(f"`calibrate_on` must be one of {CALIBRATION}, got {calibrate_on!r}.")
    config, step, z_te, y_te = embed_workdir_split(workdir, "test", config)
    seed = config.seed
    if calibrate_on == "train":
        _, _, z_cal, y_cal = embed_workdir_split(workdir, "train", config)
        z_test, y_test = z_te, y_te
    else:
        first, second = _identity_halves(y_te, seed)
        z_cal, y_cal, z_test, y_test = z_te[first], y_te[first], z_te[second], y_te[second]
    d_cal, same_cal = _pair_distances(z_cal, y_cal, num_pairs, seed)
    cal = metrics.calibrate(d_cal, same_cal, target_far=target_far, seed=seed)
    d_test, same_test = _pair_distances(z_test, y_test, num_pairs, seed + 1)
    accept = d_test <= cal.threshold
    test_far = float(np.mean(accept[~same_test]))
    test_tar = float(np.mean(accept[same_test]))
    section = {
        "step": step,
        "target_far": target_far,
        "calibrate_on": calibrate_on,
        "threshold": float(cal.threshold),
        "calibration": {
            "far": cal.far,
            "tar": cal.tar,
            "far_interval": list(cal.far_interval),
            "tar_interval": list(cal.tar_interval),
            "num_genuine": cal.num_genuine,
            "num_impostor": cal.num_impostor,
            "confidence": cal.confidence,
        },
        "test": {
            "far": test_far,
            "tar": test_tar,
            "num_genuine": int(same_test.sum()),
            "num_impostor": int((~same_test).sum()),
        },
        "far_in_interval": bool(cal.far_interval[0] <= test_far <= cal.far_interval[1]),
    }
    path = os.path.join(workdir, evaluate_cli.METRICS_FILE)
    data: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data[VERIFY_KEY] = section
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    if print_result:
        out = sys.stdout if out is None else out
        c, t = section["calibration"], section["test"]
        print(
            f"jaxmetric verify: {workdir} | step {step} | threshold {cal.threshold:.4f} "
            f"(cosine distance) at target FAR {target_far:g}\n"
            f"  calibration ({calibrate_on}): FAR {c['far']:.4g} "
            f"[{c['far_interval'][0]:.4g}, {c['far_interval'][1]:.4g}], TAR {c['tar']:.4f} "
            f"[{c['tar_interval'][0]:.4f}, {c['tar_interval'][1]:.4f}] "
            f"({c['num_genuine']} genuine, {c['num_impostor']} impostor pairs)\n"
            f"  test: FAR {t['far']:.4g}, TAR {t['tar']:.4f} "
            f"({t['num_genuine']} genuine, {t['num_impostor']} impostor pairs); "
            f"FAR within the calibration interval: {section['far_in_interval']}\n"
            f"wrote {path}",
            file=out,
        )
    return section
