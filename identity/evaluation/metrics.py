"""Pure metric functions over similarity scores (higher = more alike). No I/O, no models.

Conventions: `labels` is a boolean array, True for genuine (same person) pairs; a pair
is accepted when its score >= the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut (midway between adjacent sorted scores) with the highest accuracy."""
    order = np.argsort(scores)
    s, y = scores[order], labels[order].astype(int)
    # Cutting before position i: the i lowest are called "different", the rest "same".
    correct = np.concatenate([[0], np.cumsum(1 - y)]) + np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    i = int(np.argmax(correct))
    if i == 0:
        return float(s[0]) - 1e-6
    if i == len(s):
        return float(s[-1]) + 1e-6
    return float((s[i - 1] + s[i]) / 2)


def ten_fold_accuracy(scores: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Mean and std of held-out accuracy, each fold's threshold chosen on the other nine; and the mean threshold."""
    order = np.random.default_rng(seed).permutation(len(scores))
    folds = np.array_split(order, 10)
    accuracies, thresholds = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        threshold = best_threshold(scores[train], labels[train])
        accuracies.append(np.mean((scores[test] >= threshold) == labels[test]))
        thresholds.append(threshold)
    return float(np.mean(accuracies)), float(np.std(accuracies)), float(np.mean(thresholds))


@dataclass(frozen=True)
class FarThreshold:
    far: float  # the target false-accept rate
    threshold: float  # accepts at most far x impostors
    low: float  # 95% interval of the threshold, from the binomial spread of the impostor count
    high: float
    impostors: int

    @property
    def resolvable(self) -> bool:
        """Enough impostor pairs that the target rate means at least one accepted impostor."""
        return self.far * self.impostors >= 1


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> FarThreshold:
    """The smallest threshold at which at most `far` of the impostor scores are accepted."""
    ranked = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    n = len(ranked)
    if n == 0:
        raise ValueError("no impostor scores")

    def cut(allowed: float) -> float:
        # Accept strictly fewer than allowed+1 impostors: the threshold sits just above score[allowed].
        index = int(math.floor(allowed))
        return float(np.nextafter(ranked[index], np.inf)) if index < n else float(ranked[-1])

    expected = far * n
    spread = 1.96 * math.sqrt(max(expected * (1 - far), 0.0))
    return FarThreshold(far, cut(expected), cut(expected + spread), cut(max(expected - spread, 0.0)), n)


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """Share of genuine pairs accepted at the threshold that accepts at most `far` of impostors."""
    threshold = threshold_at_far(scores[~labels], far).threshold
    return float(np.mean(scores[labels] >= threshold)), threshold


def roc(scores: np.ndarray, labels: np.ndarray, points: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, threshold) over `points` thresholds spanning the scores."""
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 1, points)))
    genuine, impostor = np.sort(scores[labels]), np.sort(scores[~labels])
    tar = 1 - np.searchsorted(genuine, thresholds, side="left") / max(len(genuine), 1)
    far = 1 - np.searchsorted(impostor, thresholds, side="left") / max(len(impostor), 1)
    return far, tar, thresholds


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where false accepts and false rejects balance."""
    candidates = np.unique(scores)
    genuine, impostor = np.sort(scores[labels]), np.sort(scores[~labels])
    frr = np.searchsorted(genuine, candidates, side="left") / len(genuine)
    far = 1 - np.searchsorted(impostor, candidates, side="left") / len(impostor)
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(candidates[i])


def cmc(ranks: list[int | None], max_rank: int = 10) -> list[float]:
    """Share of probes whose true identity is within rank r, for r = 1..max_rank (None = missed)."""
    total = len(ranks)
    if total == 0:
        return [0.0] * max_rank
    return [sum(1 for r in ranks if r is not None and r <= k) / total for k in range(1, max_rank + 1)]


def fnir_at_fpir(mated_top: list[tuple[bool, float]], non_mated_top: list[float], fpir: float) -> tuple[float, float]:
    """Open-set: FNIR at the threshold where `fpir` of non-mated searches still return someone.

    mated_top: per mated search, (is the true person ranked first, top score);
    non_mated_top: per search of a person not in the gallery, its top score (-1 if none).
    """
    threshold = threshold_at_far(np.array(non_mated_top), fpir).threshold
    misses = sum(1 for correct, score in mated_top if not correct or score < threshold)
    return misses / max(len(mated_top), 1), threshold
