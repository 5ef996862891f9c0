"""Baselines the product's clustering (search-enroll) was measured against; benchmarks/clustering.py runs them.

They live here, not in the product: `identity cluster` runs search-enroll only
(identity.services.clustering.algorithms), and these serve the comparison.

- search-enroll-single-pass: search-enroll's first pass alone (what refinement adds).
- graph: Chinese Whispers (Biemann 2006) on the graph joining faces whose cosine passes
  the pairwise (1:1) threshold, weighted by the cosine.
- graph-tnorm: Chinese Whispers on edges whose T-normed pair score, the decision rule
  without its margin term (s + TNORM_WEIGHT * T-norm of s against either face's cohort
  of nearest faces), passes the decision threshold.
- dbscan-immich: Immich's baseline, scikit-learn DBSCAN on cosine distance, eps 0.5,
  min_samples 3 (Immich's "maximum distance" and "minimum faces"); set for ArcFace-style
  models, whose strangers sit near cosine 0.
- dbscan-pairwise, dbscan-pairwise-1: DBSCAN with eps = 1 - pairwise threshold,
  min_samples 3 and 1 (1 is single linkage: connected components of the pairwise graph).
- hdbscan: scikit-learn HDBSCAN, min_cluster_size 2, on euclidean distance between the
  unit vectors (monotone in cosine).

The DBSCAN and HDBSCAN baselines need scikit-learn (the test extra), imported only when
they run; their noise faces become singletons. Every method goes through the product's
`cluster_faces`, which keeps two faces of one photo apart and numbers labels canonically.
Neighbours are computed a block of faces at a time (the DBSCAN baselines hold scikit-learn's
whole neighbourhoods).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from identity.evaluation.decision import COHORT, MIN_COHORT, TNORM_WEIGHT
from identity.services.clustering.algorithms import (
    DEFAULT_METHOD,
    ClusterThreshold,
    Method,
    cluster_faces,
    search_enroll,
)

GRAPH_NEIGHBOURS = 64  # edges considered per face; a person with more faces still connects through them
CW_ITERATIONS = 30
IMMICH_EPS, IMMICH_MIN_FACES = 0.5, 3
BLOCK = 512  # faces scored per matrix product


# -- graphs -------------------------------------------------------------------------------------------
def graph(vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold) -> np.ndarray:
    index, sims = nearest_neighbours(vectors, GRAPH_NEIGHBOURS)
    return chinese_whispers(edges(index, sims, sims >= threshold.pairwise, photos), photos)


def graph_tnorm(vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold) -> np.ndarray:
    index, sims = nearest_neighbours(vectors, COHORT + 1)
    cohort = sims[:, 1:]  # a face's cohort: its nearest faces after the first, as a search's after the best person
    if cohort.shape[1] < MIN_COHORT:  # too few faces for a cohort: the 1:1 threshold, as search does
        return chinese_whispers(edges(index, sims, sims >= threshold.pairwise, photos), photos)
    mean, spread = cohort.mean(axis=1), np.maximum(cohort.std(axis=1), 1e-6)
    own = sims + TNORM_WEIGHT * (sims - mean[:, None]) / spread[:, None]
    other = sims + TNORM_WEIGHT * (sims - mean[index]) / spread[index]
    keep = np.minimum(own, other) >= threshold.decision  # both faces' cohorts must agree
    return chinese_whispers(edges(index, sims, keep, photos), photos)


def edges(
    index: np.ndarray, sims: np.ndarray, keep: np.ndarray, photos: Sequence[str]
) -> list[list[tuple[int, float]]]:
    """Symmetric weighted adjacency lists (neighbour, cosine), sorted by neighbour; no edge within a photo."""
    adjacency: list[dict[int, float]] = [{} for _ in range(len(index))]
    for a, b in zip(*np.nonzero(keep)):
        j = int(index[a, b])
        if photos[a] != photos[j]:
            weight = float(sims[a, b])
            adjacency[a][j] = adjacency[j][int(a)] = weight
    return [sorted(neighbours.items()) for neighbours in adjacency]


def chinese_whispers(edges: list[list[tuple[int, float]]], photos: Sequence[str]) -> np.ndarray:
    """Each face in turn takes the label its neighbours weigh most (ties: the lowest), never one that
    another face of its photo holds; in input order, until nothing changes (deterministic)."""
    labels = list(range(len(edges)))
    holders: dict[tuple[int, str], int] = {(face, photo): 1 for face, photo in enumerate(photos)}
    for _ in range(CW_ITERATIONS):
        changed = False
        for face, neighbours in enumerate(edges):
            weights: dict[int, float] = {}
            for other, weight in neighbours:
                weights[labels[other]] = weights.get(labels[other], 0.0) + weight
            current, photo = labels[face], photos[face]
            allowed = [
                (-w, label) for label, w in weights.items() if label == current or not holders.get((label, photo))
            ]
            if not allowed:
                continue
            best = min(allowed)[1]
            if best != current:
                holders[(current, photo)] -= 1
                holders[(best, photo)] = holders.get((best, photo), 0) + 1
                labels[face] = best
                changed = True
        if not changed:
            break
    return np.array(labels, dtype=np.int64)


def nearest_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each face's k most similar other faces (indices, cosines), best first; a block of rows at a time."""
    n = len(vectors)
    k = max(0, min(k, n - 1))
    index = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return index, sims
    for start in range(0, n, BLOCK):
        block = vectors[start : start + BLOCK] @ vectors.T
        rows = np.arange(len(block))
        block[rows, rows + start] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)  # best first, ties by index: deterministic
        index[start : start + BLOCK] = np.take_along_axis(top, order, axis=1)
        sims[start : start + BLOCK] = np.take_along_axis(top_sims, order, axis=1)
    return index, sims


# -- scikit-learn baselines -----------------------------------------------------------------------------
def dbscan(eps: float, min_samples: int) -> Method:
    def run(vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        return noise_alone(DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(vectors).labels_)

    return run


def dbscan_pairwise(min_samples: int) -> Method:
    def run(vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold) -> np.ndarray:
        return dbscan(1.0 - threshold.pairwise, min_samples)(vectors, photos, threshold)

    return run


def hdbscan(vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.int64)
    return noise_alone(HDBSCAN(min_cluster_size=2, metric="euclidean", copy=True).fit(vectors).labels_)


def noise_alone(labels: np.ndarray) -> np.ndarray:
    """Noise (-1) faces each become a cluster of their own."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return labels


METHODS: dict[str, Method] = {
    DEFAULT_METHOD: search_enroll,
    "search-enroll-single-pass": partial(search_enroll, rounds=0),
    "graph": graph,
    "graph-tnorm": graph_tnorm,
    "dbscan-immich": dbscan(IMMICH_EPS, IMMICH_MIN_FACES),
    "dbscan-pairwise": dbscan_pairwise(3),
    "dbscan-pairwise-1": dbscan_pairwise(1),
    "hdbscan": hdbscan,
}


def cluster(
    vectors: np.ndarray, photos: Sequence[str], threshold: ClusterThreshold, method: str = DEFAULT_METHOD
) -> np.ndarray:
    """`cluster_faces` with any method named here."""
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r} (known: {', '.join(METHODS)})")
    return cluster_faces(vectors, photos, threshold, METHODS[method])
