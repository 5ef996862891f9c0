"""The person split and the validation figures that decide whether a fine-tuned model is promoted."""

from __future__ import annotations

import numpy as np
import pytest

from identity.errors import IdentityError
from identity.train.validation import Figures, split_by_person, validation_figures


def test_split_keeps_each_person_on_one_side_and_is_seeded() -> None:
    labels = np.repeat(np.arange(50), 3)
    split = split_by_person(labels, 0.2, seed=7)
    assert split.val_persons == 10 and split.train_persons == 40
    assert not set(labels[split.train]) & set(labels[split.val])
    assert len(split.train) + len(split.val) == len(labels)
    assert np.array_equal(split_by_person(labels, 0.2, seed=7).val, split.val)
    assert not np.array_equal(split_by_person(labels, 0.2, seed=8).val, split.val)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.99])
def test_split_refuses_what_leaves_nothing_to_train_or_validate(fraction: float) -> None:
    with pytest.raises(IdentityError):
        split_by_person(np.repeat(np.arange(5), 2), fraction, seed=1)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_figures_on_separable_and_confused_embeddings() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(20, 16)))
    labels = np.repeat(np.arange(20), 3)
    tight = _unit(centres[labels] + 0.01 * rng.normal(size=(60, 16)))
    figures = validation_figures(tight, labels)
    assert (figures.rank1, figures.tar) == (1.0, 1.0)
    assert (figures.probes, figures.gallery, figures.impostor_pairs) == (40, 20, 60 * 59 // 2 - 20 * 3)
    # Swap the second photos of persons 0 and 1: their probes now find the other person first.
    swapped = tight.copy()
    swapped[[1, 4]] = tight[[4, 1]]
    assert validation_figures(swapped, labels).rank1 == pytest.approx(38 / 40)


def test_better_means_rank1_up_without_giving_up_tar() -> None:
    def figures(rank1: float, tar: float) -> Figures:
        return Figures(rank1, tar, 0.5, 100, 50, 1000)

    before = figures(0.95, 0.90)
    assert figures(0.96, 0.90).better_than(before)
    assert figures(0.96, 0.896).better_than(before)  # within the 0.5-point tolerance
    assert not figures(0.96, 0.89).better_than(before)
    assert not figures(0.95, 0.99).better_than(before)
