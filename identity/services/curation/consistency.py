"""Persons whose faces do not agree with each other: a folder that named one person but held several.

For each person with at least MIN_FACES searchable faces, every pair of their stored
vectors is compared; when fewer than AGREEING_SHARE of the pairs reach the model's
1:1 match threshold (thresholds.pairwise_threshold: calibrated by FAR, else the pack's default), the person
is flagged `inconsistent_person`. A real person's photos agree in most pairs even with
a few bad shots; a department folder enrolled as one "person" agrees in almost none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from identity.app.core import App
from identity.app.deployment import Deployment
from identity.services.search.thresholds import pairwise_threshold
from identity.store.sql.persons import indexed_faces_by_person
from identity.store.vectors.unit_vectors import intact_vectors

MIN_FACES = 3  # 2 faces make a single pair: one poor photo would flag a real person
# Flagged below this share of pairs at or above the match threshold. At 0.5, 5 real lfw-dev
# people with one poor photo of three (1 pair of 3 agreeing) were flagged; a folder of
# different people agrees in almost no pair (0.0 for all 10 mixed folders tried).
AGREEING_SHARE = 1 / 3
MAX_FACES = 200  # faces compared per person (19,900 pairs); pairs grow with the square
FETCH_BATCH = 2000  # vectors fetched from the store per call


@dataclass(frozen=True)
class InconsistentPerson:
    external_id: str
    faces: int  # searchable faces held (at most MAX_FACES of them compared)
    agreeing_pairs_share: float

    @property
    def flag(self) -> str:
        return f"inconsistent_person:{self.agreeing_pairs_share:.2f}"


def inconsistent_persons(app: App, external_ids: Sequence[str] | None = None) -> list[InconsistentPerson]:
    """The given persons (None: everyone) whose faces under the active model mostly disagree."""
    dep = app.deployment()
    threshold = pairwise_threshold(dep.model, dep.pipeline)
    with app.sessions() as session:
        faces = indexed_faces_by_person(
            session, dep.model.id, None if external_ids is None else sorted(set(external_ids))
        )
    found: list[InconsistentPerson] = []
    for external_id, vectors in _vector_groups(dep, {k: v for k, v in faces.items() if len(v) >= MIN_FACES}):
        share = agreeing_share(vectors, threshold)
        if share is not None and share < AGREEING_SHARE:
            found.append(InconsistentPerson(external_id, len(faces[external_id]), round(share, 3)))
    return found


def agreeing_share(vectors: np.ndarray, threshold: float) -> float | None:
    """Share of distinct pairs of unit vectors whose cosine reaches `threshold`; None under MIN_FACES vectors."""
    if len(vectors) < MIN_FACES:
        return None
    upper = np.triu_indices(len(vectors), k=1)
    return float(np.mean((vectors @ vectors.T)[upper] >= threshold))


def _vector_groups(dep: Deployment, faces: dict[str, list]) -> Iterator[tuple[str, np.ndarray]]:
    """(external id, their stored vectors), fetching a batch of persons per call to the store."""
    batch: list[str] = []
    size = 0
    for external_id in sorted(faces):
        batch.append(external_id)
        size += min(len(faces[external_id]), MAX_FACES)
        if size >= FETCH_BATCH:
            yield from _fetch(dep, faces, batch)
            batch, size = [], 0
    yield from _fetch(dep, faces, batch)


def _fetch(dep: Deployment, faces: dict[str, list], persons: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    if not persons:
        return
    # A damaged vector is doctor's to report (integrity), not a reason to call a person inconsistent.
    stored = intact_vectors(dep.index, [f for p in persons for f in faces[p][:MAX_FACES]], set())
    for person in persons:
        held = [stored[f] for f in faces[person][:MAX_FACES] if f in stored]
        if held:
            yield person, np.stack(held).astype(np.float32)
