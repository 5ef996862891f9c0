"""The person split and the figures fine-tuning is judged by, on people it never trained on.

Validation follows `identity eval`'s protocol on the held-out persons: each one's
first image is the gallery, their other images are probes (rank-1 = the nearest
gallery image is the right person), and every pair of their faces is a genuine or
an impostor pair for TAR at FAR 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from identity.errors import IdentityError
from identity.evaluation.metrics import threshold_at_far

FAR = 1e-3
# Promotion: rank-1 must rise, and TAR@FAR=1e-3 may not fall by more than this.
TAR_TOLERANCE = 0.005


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the ChipSet
    val: np.ndarray
    train_persons: int
    val_persons: int


def split_by_person(labels: np.ndarray, val_fraction: float, seed: int) -> Split:
    """A seeded split of the persons (never of one person's photos) into train and validation."""
    persons = np.unique(labels)
    if not 0 < val_fraction < 1:
        raise IdentityError(f"validation fraction must be between 0 and 1, not {val_fraction}")
    shuffled = np.random.default_rng(seed).permutation(persons)
    held = max(2, round(len(persons) * val_fraction))
    if held >= len(persons) - 1:
        raise IdentityError(f"{len(persons)} persons are too few to hold {val_fraction:.0%} out for validation")
    val_persons = set(shuffled[:held].tolist())
    in_val = np.array([label in val_persons for label in labels])
    return Split(np.flatnonzero(~in_val), np.flatnonzero(in_val), len(persons) - held, held)


@dataclass(frozen=True)
class Figures:
    rank1: float
    tar: float  # at FAR 1e-3
    threshold: float  # the cosine at FAR 1e-3
    probes: int
    gallery: int
    impostor_pairs: int

    def better_than(self, other: Figures) -> bool:
        return self.rank1 > other.rank1 and self.tar >= other.tar - TAR_TOLERANCE


def validation_figures(embeddings: np.ndarray, labels: np.ndarray) -> Figures:
    """Rank-1 and TAR@FAR=1e-3 of unit embeddings of the validation faces (in ChipSet order)."""
    first: dict[int, int] = {}
    for index, label in enumerate(labels.tolist()):
        first.setdefault(label, index)
    gallery = np.array(sorted(first.values()))
    probes = np.setdiff1d(np.arange(len(labels)), gallery)
    if len(probes) == 0:
        raise IdentityError("no validation person has two photos: nothing to measure rank-1 on")
    nearest = gallery[np.argmax(embeddings[probes] @ embeddings[gallery].T, axis=1)]
    rank1 = float(np.mean(labels[nearest] == labels[probes]))
    scores = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), k=1)
    pair_scores, same = scores[upper], (labels[:, None] == labels[None, :])[upper]
    threshold = threshold_at_far(pair_scores[~same], FAR).threshold
    tar = float(np.mean(pair_scores[same] >= threshold))
    return Figures(rank1, tar, threshold, len(probes), len(gallery), int((~same).sum()))
