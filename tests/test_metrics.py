"""The evaluation metrics against hand-computed cases."""

import numpy as np
import pytest

from identity.evaluation import metrics


def test_threshold_at_far_accepts_at_most_the_target_share() -> None:
    impostors = np.linspace(0, 1, 1000)  # 0.000 .. 1.000
    result = metrics.threshold_at_far(impostors, 0.01)
    accepted = int(np.sum(impostors >= result.threshold))
    assert accepted == 10  # floor(0.01 * 1000) impostors allowed, and no more
    assert result.low < result.threshold < result.high
    assert result.resolvable and not metrics.threshold_at_far(impostors, 1e-4).resolvable


def test_tar_and_eer_on_separable_and_overlapping_scores() -> None:
    labels = np.array([True] * 100 + [False] * 100)
    separable = np.concatenate([np.linspace(0.6, 1.0, 100), np.linspace(-0.2, 0.4, 100)])
    tar, _ = metrics.tar_at_far(separable, labels, 0.01)
    assert tar == 1.0
    assert metrics.eer(separable, labels)[0] == 0.0
    overlapping = np.concatenate([np.linspace(0.3, 1.0, 100), np.linspace(0.0, 0.7, 100)])
    rate, threshold = metrics.eer(overlapping, labels)
    assert 0.15 < rate < 0.35 and 0.3 <= threshold <= 0.7


def test_ten_fold_accuracy_finds_the_gap() -> None:
    labels = np.array([True] * 300 + [False] * 300)
    scores = np.concatenate([np.full(300, 0.8), np.full(300, 0.2)]) + np.random.default_rng(0).normal(0, 0.01, 600)
    accuracy, std, threshold = metrics.ten_fold_accuracy(scores, labels, seed=1)
    assert accuracy == 1.0 and std == 0.0 and 0.25 < threshold < 0.75


def test_cmc_counts_misses_as_misses() -> None:
    assert metrics.cmc([1, 2, None, 10], max_rank=10)[:3] == [0.25, 0.5, 0.5]
    assert metrics.cmc([1, 2, None, 10])[-1] == 0.75


def test_fnir_at_fpir() -> None:
    non_mated = list(np.linspace(0, 0.5, 100))  # the best stranger scores
    mated = [(True, 0.9)] * 90 + [(True, 0.45)] * 5 + [(False, 0.95)] * 5
    fnir, threshold = metrics.fnir_at_fpir(mated, non_mated, 0.05)
    assert 0.45 < threshold <= 0.5
    assert fnir == pytest.approx(0.10)  # 5 too weak + 5 wrong person first
