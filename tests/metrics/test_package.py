"""jaxmetric.metrics as a package: its public names, and what its modules import."""

from __future__ import annotations

import ast
import pathlib

import jaxmetric.metrics

# The public names of the single-module jaxmetric.metrics this package replaced.
OLD_PUBLIC_NAMES = [
    "KMeansResult",
    "RETRIEVAL_METRICS",
    "clustering_metrics",
    "evaluate_embeddings",
    "kmeans",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "normalized_mutual_info",
    "retrieval_metrics",
    "verification_metrics",
    "verification_pairs",
]


def test_public_names_are_kept_and_exported():
    for name in OLD_PUBLIC_NAMES + ["adjusted_mutual_info"]:
        assert name in jaxmetric.metrics.__all__, name
        assert getattr(jaxmetric.metrics, name) is not None


def test_modules_import_neither_scikit_learn_nor_the_training_stack():
    # A kernel: no models / data / train / main, and no scikit-learn at all.
    banned = ("sklearn", "jaxmetric.models", "jaxmetric.data", "jaxmetric.train", "jaxmetric.main")
    for path in pathlib.Path(jaxmetric.metrics.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.module == "jaxmetric":
                    names = [f"jaxmetric.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
