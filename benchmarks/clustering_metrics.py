"""How well a clustering of faces matches the true identities: BCubed and pairwise scores.

BCubed (Bagga and Baldwin 1998; Amigo et al. 2009) scores every face: its precision is
the share of its cluster that is its person, its recall the share of its person that is
in its cluster; both are averaged over faces, so a large person weighs as many faces as
it has, and a singleton that should be alone counts as a perfect face. Pairwise scores
count pairs of faces put together: precision = same-person pairs among the pairs in one
cluster, recall = pairs in one cluster among the same-person pairs. Pairwise figures are
dominated by the largest persons (pairs grow with the square of a size), which is why
BCubed is the headline figure.

Labels are any values numpy can compare (ints, strings); only equality matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClusteringScores:
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def clustering_scores(predicted: Any, truth: Any) -> ClusteringScores:
    """Every score of `predicted` cluster labels against `truth` identity labels (one of each per face)."""
    cells = _contingency(predicted, truth)
    return ClusteringScores(*_bcubed(*cells), *_pairwise(*cells))


def bcubed(predicted: Any, truth: Any) -> tuple[float, float, float]:
    """BCubed precision, recall and F (their harmonic mean)."""
    return _bcubed(*_contingency(predicted, truth))


def pairwise(predicted: Any, truth: Any) -> tuple[float, float, float]:
    """Pairwise precision, recall and F. With no pair in any cluster, precision is 1 (nothing wrongly joined);
    with no same-person pair, recall is 1 (nothing to find)."""
    return _pairwise(*_contingency(predicted, truth))


def _contingency(predicted: Any, truth: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face counts per non-empty (cluster, person) cell, and each cell's cluster and person sizes."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or predicted.ndim != 1:
        raise ValueError(
            f"need one predicted and one true label per face, got shapes {predicted.shape} and {truth.shape}"
        )
    if len(predicted) == 0:
        raise ValueError("no faces to score")
    _, cluster = np.unique(predicted, return_inverse=True)
    _, person = np.unique(truth, return_inverse=True)
    cells, counts = np.unique(np.stack([cluster, person], axis=1), axis=0, return_counts=True)
    cluster_sizes = np.bincount(cluster)[cells[:, 0]]
    person_sizes = np.bincount(person)[cells[:, 1]]
    return counts.astype(np.float64), cluster_sizes.astype(np.float64), person_sizes.astype(np.float64)


def _bcubed(counts: np.ndarray, cluster_sizes: np.ndarray, person_sizes: np.ndarray) -> tuple[float, float, float]:
    faces = counts.sum()
    # Each of a cell's `count` faces has precision count / cluster size and recall count / person size.
    precision = float((counts**2 / cluster_sizes).sum() / faces)
    recall = float((counts**2 / person_sizes).sum() / faces)
    return precision, recall, _harmonic(precision, recall)


def _pairwise(counts: np.ndarray, cluster_sizes: np.ndarray, person_sizes: np.ndarray) -> tuple[float, float, float]:
    together = float((counts * (counts - 1) / 2).sum())
    # A cluster's pairs, size * (size - 1) / 2, shared among its cells in proportion to their counts (same for persons).
    clustered = float((counts * (cluster_sizes - 1) / 2).sum())
    same = float((counts * (person_sizes - 1) / 2).sum())
    precision = together / clustered if clustered else 1.0
    recall = together / same if same else 1.0
    return precision, recall, _harmonic(precision, recall)


def _harmonic(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
