"""Which decision threshold a search uses, where it came from, and what it implies.

Order: an explicit --threshold, else the model's calibrated threshold (identity
calibrate), else the pack's documented default (for the offline pack, one measured by
FPIR on lfw-dev for the normalized rule). With a known false-accept rate the
expected number of false matches per search grows with the gallery (about FAR x the
number of persons searched); above EXPECTED_FALSE_MATCH_LIMIT the search says so.
A threshold calibrated by FPIR (identity calibrate --fpir) holds for galleries near the
size it was calibrated at; past GALLERY_GROWTH_LIMIT times that size the search says so.

A threshold belongs to a decision rule (identity.evaluation.decision): one calibrated
by FPIR to the normalized score, any other (a 1:1 FAR, the pack's default) to the raw
top-1 similarity. A threshold given on the command line keeps the rule that would
apply without it. 1:1 questions (are these two faces one person?) use
pairwise_threshold, always a cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

from identity.evaluation.decision import NORMALIZED, RAW
from identity.faces import FacePipeline
from identity.store.sql.tables import Model

EXPECTED_FALSE_MATCH_LIMIT = 0.01
GALLERY_GROWTH_LIMIT = 2.0


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # "command line", "calibrated ...", "pack default ..."
    far: float | None = None  # false-accept rate per comparison, when known
    fpir: float | None = None  # share of searches for unenrolled people that match, when calibrated so
    gallery_persons: int | None = None  # the gallery size the FPIR was calibrated at
    rule: str = RAW  # the decision score it applies to: raw top-1 similarity, or normalized

    def warnings(self, persons: int) -> list[str]:
        """What the gallery size implies for this threshold (empty when nothing is known or it is harmless)."""
        return self._far_warnings(persons) + self._growth_warnings(persons)

    def _growth_warnings(self, persons: int) -> list[str]:
        if self.fpir is None or not self.gallery_persons or persons <= GALLERY_GROWTH_LIMIT * self.gallery_persons:
            return []
        return [
            f"the gallery has grown from {self.gallery_persons} persons, when the threshold was calibrated at "
            f"FPIR {self.fpir:g}, to {persons} (more than {GALLERY_GROWTH_LIMIT:g}x): searches for people who "
            "are not enrolled may match more often than that; recalibrate (identity calibrate --fpir)"
        ]

    def _far_warnings(self, persons: int) -> list[str]:
        if self.far is None:
            return []
        expected = self.far * persons
        if expected <= EXPECTED_FALSE_MATCH_LIMIT:
            return []
        return [
            f"gallery of {persons} persons at FAR {self.far:g} per comparison: about {expected:.2f} false "
            f"matches expected per searched face (limit {EXPECTED_FALSE_MATCH_LIMIT}); treat a match as a lead, "
            "or calibrate a stricter threshold (identity calibrate --far)"
        ]


def resolve_threshold(model: Model | None, pipeline: FacePipeline, override: float | None = None) -> Threshold:
    """`model` None: a pack not recorded in the store yet (so never calibrated)."""
    if model is not None and model.threshold is not None:
        rule = NORMALIZED if model.threshold_fpir is not None else RAW
        chosen = Threshold(
            model.threshold,
            model.threshold_source or "calibrated",
            model.threshold_far,
            model.threshold_fpir,
            model.threshold_gallery_persons,
            rule,
        )
    else:
        chosen = pack_default(pipeline)
    return chosen if override is None else Threshold(override, "command line", rule=chosen.rule)


def pack_default(pipeline: FacePipeline) -> Threshold:
    """The pack's measured threshold on the normalized score where it has one, else its 1:1 threshold (raw)."""
    decision = pipeline.default_decision
    if decision is None:
        return pack_threshold(pipeline)
    return Threshold(
        decision.value, f"pack default ({decision.source})", None, decision.fpir, decision.gallery_persons, NORMALIZED
    )


def pack_threshold(pipeline: FacePipeline) -> Threshold:
    """The pack's documented 1:1 threshold, for the raw rule."""
    default = pipeline.default_threshold
    return Threshold(default.value, f"pack default ({default.source})", default.far)


def pairwise_threshold(model: Model | None, pipeline: FacePipeline) -> float:
    """The cosine at which two faces count as one person: calibrated by FAR, else the pack's default."""
    if model is not None and model.threshold is not None and model.threshold_fpir is None:
        return model.threshold
    return pipeline.default_threshold.value
