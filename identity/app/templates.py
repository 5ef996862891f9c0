"""Person templates: one vector per person and model, scored by search in place of single faces.

A template is the normalized mean of the person's indexed face embeddings (unit
vectors), kept in the model's template collection (point id = person id).
It is derived data: SQL says which faces are indexed, the face collection holds their
vectors, and the template is rewritten from both after the SQL commit, as face vectors
are. A crash between the two leaves a stale template; `identity doctor` finds it by
recomputing and `--repair` rewrites it (identity.services.search.templates). A person with
no indexed face has no template, so is never a candidate.

The primitive lives in the application core because preparing a deployment for writes
(identity.app.deployment) back-fills the templates of a store from before them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import numpy as np

from identity.app.collections import ModelCollections
from identity.store.sql.db import SessionFactory
from identity.store.sql.persons import indexed_face_ids
from identity.store.vectors import VectorIndex, VectorPoint
from identity.store.vectors.unit_vectors import intact_vectors

BATCH = 500  # persons per round trip


def template_of(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The normalized mean of unit face vectors (the engine normalizes again; harmless)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    mean = matrix.mean(axis=0)
    template: np.ndarray = (mean / np.linalg.norm(mean)).astype(np.float32)
    return template


def expected_templates(
    sessions: SessionFactory,
    faces: VectorIndex,
    model_row_id: int,
    person_ids: Sequence[uuid.UUID] | None,
    damaged: set[uuid.UUID] | None = None,
) -> dict[uuid.UUID, np.ndarray]:
    """What the templates of these persons (None: everyone) should be, from SQL and the face vectors.

    A face indexed in SQL whose vector is missing (doctor's own finding) is left out, and so is
    one whose stored vector is damaged (not finite unit norm): added to `damaged` when given,
    else StoreDamaged, so a damaged vector never becomes a silently wrong template.
    """
    with sessions() as session:
        by_person = indexed_face_ids(session, model_row_id, person_ids)
    expected: dict[uuid.UUID, np.ndarray] = {}
    people = list(by_person.items())
    for start in range(0, len(people), BATCH):
        chunk = people[start : start + BATCH]
        vectors = intact_vectors(faces, [f for _, ids in chunk for f in ids], damaged)
        for person_id, ids in chunk:
            found = [vectors[f] for f in ids if f in vectors]
            if found:
                expected[person_id] = template_of(found)
    return expected


def refresh_templates(
    sessions: SessionFactory,
    faces: VectorIndex,
    templates: VectorIndex,
    model_row_id: int,
    person_ids: Iterable[uuid.UUID],
) -> int:
    """Rewrite the templates of these persons from their indexed faces (deleting those left with none).

    Call it after the SQL commit that changed their faces. Returns the templates written.
    """
    wanted = sorted(set(person_ids))
    written = 0
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start : start + BATCH]
        expected = expected_templates(sessions, faces, model_row_id, chunk)
        templates.upsert([VectorPoint(p, p, v) for p, v in expected.items()])
        templates.delete([p for p in chunk if p not in expected])
        written += len(expected)
    return written


def lacks_templates(held: ModelCollections) -> bool:
    """A store from before templates: faces, and not one template (later gaps are doctor's to find)."""
    return held.templates.count() == 0 and held.faces.count() > 0


def build_missing_templates(sessions: SessionFactory, held: ModelCollections, model_row_id: int) -> None:
    """Every template of a store that lacks them (lacks_templates), once; without them search finds nobody."""
    if not lacks_templates(held):
        return
    with sessions() as session:
        persons = list(indexed_face_ids(session, model_row_id))
    refresh_templates(sessions, held.faces, held.templates, model_row_id, persons)
    held.templates.optimize()
