"""The one score a search's match-or-unknown decision compares with the threshold.

Search, eval's open-set figures (fnir_at_fpir) and `calibrate --fpir` all call
decision_score, so a better rule changes this one place. Two rules:

- raw: the best person's similarity (the top-1 cosine). Its threshold is a 1:1
  false-accept rate, so the false-match rate per search grows with the gallery.
- normalized (the default once calibrated by FPIR): the top-1 score, plus its T-norm
  against the probe's own cohort (the next COHORT persons, ranks 2..COHORT+1) times
  TNORM_WEIGHT, plus the margin to the second person times MARGIN_WEIGHT:

      d = s1 + 0.01 * (s1 - mean(cohort)) / std(cohort) + 0.5 * (s1 - s2)

  A stranger's best score is one high draw among many alike; an enrolled person's
  stands out from the rest. Chosen on lfw-dev (benchmarks/decision_rules.py, which
  reports every variant tried): FNIR at FPIR 1e-2 falls from 43.6% to 24.8% with one
  photo per person, and a threshold calibrated on 1,400 persons held within 2x on
  1,448 and on 362. Its scale is the cosine's plus a few hundredths (about -1 to 2).

A cohort needs persons: with fewer than MIN_COHORT beyond the first, the normalized
score is undefined and search falls back to the raw rule (saying so).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

NO_CANDIDATE = -1.0  # the score of a search that returned nobody: below any threshold


class DecisionRule(StrEnum):  # the score a decision compares with its threshold
    raw = "raw"  # the top-1 similarity
    normalized = "normalized"  # the top-1 similarity against the cohort after it


RAW, NORMALIZED = DecisionRule

COHORT = 100  # persons after the first whose scores normalize it
MIN_COHORT = 10  # below this the cohort's spread means little
TNORM_WEIGHT = 0.01
MARGIN_WEIGHT = 0.5
PERSONS_NEEDED = COHORT + 2  # what a search fetches: the first, the cohort, and one to spare for eval's hold-out


def raw_score(ranked_person_scores: Sequence[float]) -> float:
    """The best person's similarity (scores are best first)."""
    return float(ranked_person_scores[0]) if len(ranked_person_scores) else NO_CANDIDATE


def normalized_score(ranked_person_scores: Sequence[float]) -> float:
    """The normalized rule above; scores are per person, best first, at least MIN_COHORT + 1 of them."""
    scores = np.asarray(ranked_person_scores[: COHORT + 1], dtype=np.float64)
    if len(scores) < MIN_COHORT + 1:
        raise ValueError(f"the normalized score needs {MIN_COHORT + 1} ranked persons, got {len(scores)}")
    top, cohort = scores[0], scores[1:]
    tnorm = (top - cohort.mean()) / max(float(cohort.std()), 1e-6)
    return float(top + TNORM_WEIGHT * tnorm + MARGIN_WEIGHT * (top - scores[1]))


def decision_score(ranked_person_scores: Sequence[float], rule: str = NORMALIZED) -> float:
    """The score a search calls a match at or above the threshold; scores are per person, best first.

    Too few persons for a cohort give the raw score (search warns before it gets here).
    """
    if rule == NORMALIZED and cohort_large_enough(len(ranked_person_scores)):
        return normalized_score(ranked_person_scores)
    return raw_score(ranked_person_scores)


def cohort_large_enough(persons: int) -> bool:
    """Whether a gallery (or a filter's share of it) of this many persons can use the normalized rule."""
    return persons >= MIN_COHORT + 1
