"""Face clustering (the product's method and the benchmark's baselines) and clustering metrics, on synthetic
embeddings (fast, no models, no store). The baselines and metrics live in benchmarks/ (put on sys.path
here, as benchmarks/clustering.py finds them)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import clustering_methods  # noqa: E402
from clustering_methods import METHODS, cluster, nearest_neighbours  # noqa: E402
from clustering_metrics import bcubed, clustering_scores, pairwise  # noqa: E402

from identity.evaluation.decision import NORMALIZED, RAW  # noqa: E402
from identity.services.clustering import algorithms as clustering_algorithms  # noqa: E402
from identity.services.clustering.algorithms import DEFAULT_METHOD, ClusterThreshold, cluster_faces  # noqa: E402

DIM = 128
# Synthetic identities: random unit centres (strangers near cosine 0), faces at cosine ~0.85 to their centre.
THRESHOLD = ClusterThreshold(decision=0.8, rule=NORMALIZED, pairwise=0.5)
SKLEARN_METHODS = {"dbscan-immich", "dbscan-pairwise", "dbscan-pairwise-1", "hdbscan"}


def identities(sizes: list[int], seed: int = 7, noise: float = 0.053) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors for persons of the given sizes (shuffled) and each face's person."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    persons = np.repeat(np.arange(len(sizes)), sizes)
    vectors = centres[persons] + rng.normal(scale=noise, size=(len(persons), DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = rng.permutation(len(persons))
    return vectors[order].astype(np.float32), persons[order]


def own_photos(n: int) -> list[str]:
    return [f"photo-{i}" for i in range(n)]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def needs(method: str) -> None:
    if method in SKLEARN_METHODS:
        pytest.importorskip("sklearn")


def test_the_default_recovers_identities() -> None:
    sizes = [12, 9, 8] + [5] * 20 + [2] * 15 + [1] * 25
    vectors, persons = identities(sizes)
    labels = cluster_faces(vectors, own_photos(len(persons)), THRESHOLD)
    assert same_partition(labels, persons)
    assert clustering_scores(labels, persons).bcubed_f == 1.0


def test_the_normalized_rule_falls_back_to_the_pairwise_cosine_for_a_handful_of_clusters() -> None:
    vectors, persons = identities([4, 3, 2])
    assert same_partition(cluster_faces(vectors, own_photos(len(persons)), THRESHOLD), persons)


def test_the_raw_rule_decides_on_its_own_threshold() -> None:
    vectors, persons = identities([6, 5, 4] + [1] * 12)
    labels = cluster_faces(vectors, own_photos(len(persons)), ClusterThreshold(0.6, RAW, 0.6))
    assert same_partition(labels, persons)
    everyone_alone = cluster_faces(vectors, own_photos(len(persons)), ClusterThreshold(0.999, RAW, 0.999))
    assert len(set(everyone_alone.tolist())) == len(persons)


@pytest.mark.parametrize("method", METHODS)
def test_two_faces_of_one_photo_are_never_one_person(method: str) -> None:
    needs(method)
    vectors, persons = identities([6, 5] + [1] * 12)
    first = int(np.flatnonzero(persons == 0)[0])
    twin = vectors[first] + np.float32(1e-4)  # nearly the same vector, in the same photo as `first`
    vectors = np.vstack([vectors, twin / np.linalg.norm(twin)]).astype(np.float32)
    photos = own_photos(len(persons)) + [f"photo-{first}"]
    labels = cluster(vectors, photos, THRESHOLD, method)
    assert labels[first] != labels[-1]
    for photo in set(photos):
        faces = [i for i, p in enumerate(photos) if p == photo]
        assert len({int(labels[i]) for i in faces}) == len(faces)


@pytest.mark.parametrize("method", METHODS)
def test_labels_are_canonical_and_deterministic(method: str) -> None:
    needs(method)
    vectors, persons = identities([7, 3, 3, 5] + [1] * 10)
    photos = own_photos(len(persons))
    labels = cluster(vectors, photos, THRESHOLD, method)
    assert labels.dtype == np.int64 and labels.shape == (len(persons),)
    assert np.array_equal(labels, cluster(vectors.copy(), list(photos), THRESHOLD, method))
    sizes = np.bincount(labels)
    assert sizes.min() >= 1  # labels 0..k-1, none skipped
    assert np.all(np.diff(sizes) <= 0)  # 0 is the largest
    for label in range(1, len(sizes)):  # equal sizes: numbered by first appearance
        if sizes[label] == sizes[label - 1]:
            assert np.argmax(labels == label - 1) < np.argmax(labels == label)


def test_equal_clusters_are_numbered_by_first_face() -> None:
    vectors, persons = identities([3, 3, 3])
    labels = cluster_faces(vectors, own_photos(len(persons)), THRESHOLD)
    assert labels[0] == 0
    assert [int(label) for label in dict.fromkeys(labels.tolist())] == [0, 1, 2]


def test_blockwise_search_matches_one_face_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring a block against templates as they were, patched for what changed since, changes nothing."""
    vectors, persons = identities([9, 6, 6, 4, 3] + [2] * 10 + [1] * 30, seed=11, noise=0.075)
    photos = own_photos(len(persons))
    whole = cluster_faces(vectors, photos, THRESHOLD)
    monkeypatch.setattr(clustering_algorithms, "BLOCK", 5)
    assert np.array_equal(cluster_faces(vectors, photos, THRESHOLD), whole)


def test_nearest_neighbours_match_a_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clustering_methods, "BLOCK", 16)
    vectors, _ = identities([10, 10, 10, 5])
    index, sims = nearest_neighbours(vectors, 4)
    full = vectors @ vectors.T
    np.fill_diagonal(full, -np.inf)
    expected = np.sort(full, axis=1)[:, ::-1][:, :4]
    np.testing.assert_allclose(sims, expected, rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, index, axis=1), sims, rtol=1e-5)
    assert not np.any(index == np.arange(len(vectors))[:, None])


@pytest.mark.parametrize("method", ["dbscan-immich", "dbscan-pairwise"])
def test_dbscan_baselines_find_the_persons_and_keep_noise_alone(method: str) -> None:
    pytest.importorskip("sklearn")
    vectors, persons = identities([8, 6, 5] + [1] * 6)
    labels = cluster(vectors, own_photos(len(persons)), THRESHOLD, method)
    assert same_partition(labels, persons)  # strangers are noise, and noise faces are singletons, never -1


def test_a_baseline_cluster_with_two_faces_of_one_photo_keeps_the_one_nearer_its_mean() -> None:
    pytest.importorskip("sklearn")
    vectors, persons = identities([6, 5] + [1] * 6)
    person = np.flatnonzero(persons == 0)
    centre = vectors[person].mean(axis=0)
    stray = centre / np.linalg.norm(centre) + np.random.default_rng(3).normal(size=DIM) / np.sqrt(DIM)
    vectors = np.vstack([vectors, stray / np.linalg.norm(stray)]).astype(np.float32)  # cosine ~0.6 to the person
    photos = own_photos(len(persons)) + [f"photo-{person[0]}"]
    assert cluster(vectors, own_photos(len(photos)), THRESHOLD, "dbscan-immich")[-1] == 0  # joins them alone
    labels = cluster(vectors, photos, THRESHOLD, "dbscan-immich")
    assert np.all(labels[person] == 0) and np.sum(labels == labels[-1]) == 1


def test_hdbscan_baseline_runs() -> None:
    pytest.importorskip("sklearn")
    vectors, persons = identities([8, 6, 5] + [1] * 6)
    labels = cluster(vectors, own_photos(len(persons)), THRESHOLD, "hdbscan")
    assert labels.shape == (len(persons),) and labels.min() == 0
    assert clustering_scores(labels, persons).bcubed_recall == 1.0


def test_bad_input_is_refused_and_empty_input_is_empty() -> None:
    vectors, persons = identities([2, 2])
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(vectors, own_photos(4), THRESHOLD, "k-means")
    with pytest.raises(ValueError, match="photo keys"):
        cluster_faces(vectors, own_photos(3), THRESHOLD)
    with pytest.raises(ValueError, match="rule"):
        ClusterThreshold(1.0, "cosine", 0.6)
    assert cluster_faces(np.zeros((0, DIM), dtype=np.float32), [], THRESHOLD).shape == (0,)
    assert cluster_faces(vectors[:1], ["only"], THRESHOLD).tolist() == [0]
    assert DEFAULT_METHOD in METHODS


# -- metrics ------------------------------------------------------------------------------------------
def test_bcubed_and_pairwise_of_a_small_labelling_by_hand() -> None:
    truth = ["a", "a", "a", "b", "b"]
    predicted = [0, 0, 1, 1, 1]
    # Per face (precision, recall): a0, a1 (1, 2/3); a2 (1/3, 1/3); b3, b4 (2/3, 1): both average 11/15.
    precision, recall, f = bcubed(predicted, truth)
    assert precision == pytest.approx(11 / 15) and recall == pytest.approx(11 / 15) and f == pytest.approx(11 / 15)
    # Pairs put together: (a0, a1) right, (a2, b3) (a2, b4) wrong, (b3, b4) right; same-person pairs: 3 + 1.
    assert pairwise(predicted, truth) == pytest.approx((2 / 4, 2 / 4, 0.5))


def test_metrics_at_the_extremes() -> None:
    truth = np.array([1, 1, 1, 2, 3, 3])
    perfect = clustering_scores(np.array([5, 5, 5, 0, 9, 9]), truth)
    assert perfect.as_dict() == pytest.approx(dict.fromkeys(perfect.as_dict(), 1.0))
    together = clustering_scores(np.zeros(6), truth)
    assert together.bcubed_precision == pytest.approx((9 + 1 + 4) / 36) and together.bcubed_recall == 1.0
    assert together.pairwise_precision == pytest.approx(4 / 15) and together.pairwise_recall == 1.0
    alone = clustering_scores(np.arange(6), truth)
    assert alone.bcubed_precision == 1.0 and alone.bcubed_recall == pytest.approx((3 * (1 / 3) + 1 + 2 * 0.5) / 6)
    assert alone.pairwise_precision == 1.0 and alone.pairwise_recall == 0.0 and alone.pairwise_f == 0.0


def test_metrics_refuse_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="one predicted and one true label"):
        bcubed([0, 1], ["a"])
    with pytest.raises(ValueError, match="no faces"):
        pairwise([], [])
