"""The one score a search's match-or-unknown decision compares with the threshold.

Search, eval's open-set figures (fnir_at_fpir) and `calibrate --fpir` all call
decision_score, so that a better rule changes this one place. Today's rule is the raw
top-1 similarity; eval's `fnir_at_fpir_raw` keeps using raw_score whatever this becomes.
"""

from __future__ import annotations

from typing import Sequence

NO_CANDIDATE = -1.0  # the score of a search that returned nobody: below any threshold


def raw_score(ranked_person_scores: Sequence[float]) -> float:
    """The best person's similarity (scores are best first)."""
    return float(ranked_person_scores[0]) if ranked_person_scores else NO_CANDIDATE


def decision_score(ranked_person_scores: Sequence[float]) -> float:
    """The score a search calls a match at or above the threshold; scores are per person, best first."""
    return raw_score(ranked_person_scores)
