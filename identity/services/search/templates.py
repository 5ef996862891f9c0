"""Person templates: one vector per person and model, scored by search in place of single faces.

A template is the normalized mean of the person's indexed face embeddings (unit
vectors), kept in the model's template collection (point id = person id).
It is derived data: SQL says which faces are indexed, the face collection holds their
vectors, and the template is rewritten from both after the SQL commit, as face vectors
are. A crash between the two leaves a stale template; `identity doctor` finds it by
recomputing and `--repair` rewrites it. A person with no indexed face has no template,
so is never a candidate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from identity.services.maintenance.unit_vectors import intact_vectors, is_unit
from identity.store.sql.db import SessionFactory
from identity.store.sql.persons import indexed_face_ids
from identity.store.vectors import VectorIndex, VectorPoint

BATCH = 500  # persons per round trip
SAME = 1e-4  # a stored template within this cosine distance of its recomputation is current


def template_of(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The normalized mean of unit face vectors (the engine normalizes again; harmless)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    mean = matrix.mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def expected_templates(sessions: SessionFactory, faces: VectorIndex, model_row_id: int,
                       person_ids: Sequence[uuid.UUID] | None,
                       damaged: set[uuid.UUID] | None = None) -> dict[uuid.UUID, np.ndarray]:
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
        chunk = people[start:start + BATCH]
        vectors = intact_vectors(faces, [f for _, ids in chunk for f in ids], damaged)
        for person_id, ids in chunk:
            found = [vectors[f] for f in ids if f in vectors]
            if found:
                expected[person_id] = template_of(found)
    return expected


def refresh_templates(sessions: SessionFactory, faces: VectorIndex, templates: VectorIndex,
                      model_row_id: int, person_ids: Iterable[uuid.UUID]) -> int:
    """Rewrite the templates of these persons from their indexed faces (deleting those left with none).

    Call it after the SQL commit that changed their faces. Returns the templates written.
    """
    wanted = sorted(set(person_ids))
    written = 0
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start:start + BATCH]
        expected = expected_templates(sessions, faces, model_row_id, chunk)
        templates.upsert([VectorPoint(p, p, v) for p, v in expected.items()])
        templates.delete([p for p in chunk if p not in expected])
        written += len(expected)
    return written


@dataclass
class TemplateCheck:
    missing: list[uuid.UUID] = field(default_factory=list)  # a person with indexed faces and no template
    stale: list[uuid.UUID] = field(default_factory=list)  # a template that differs from its recomputation
    orphaned: list[uuid.UUID] = field(default_factory=list)  # a template of a person with no indexed face

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.stale) + len(self.orphaned)

    def persons(self) -> list[uuid.UUID]:
        return self.missing + self.stale + self.orphaned


def check_templates(sessions: SessionFactory, faces: VectorIndex, templates: VectorIndex,
                    model_row_id: int, damaged: set[uuid.UUID] | None = None) -> TemplateCheck:
    """Every template against its recomputation from the person's indexed faces; a damaged stored template
    is stale. Damaged face vectors go into `damaged` (given: the caller repairs them), else raise."""
    expected = expected_templates(sessions, faces, model_row_id, None, damaged)
    held = {person_id for person_id, _ in templates.iter_ids()}
    check = TemplateCheck(orphaned=sorted(held - set(expected)))
    present = sorted(set(expected) & held)
    for start in range(0, len(present), BATCH):
        chunk = present[start:start + BATCH]
        stored = templates.vectors(chunk)
        check.stale += [p for p in chunk if p not in stored or not is_unit(stored[p])
                        or float(stored[p] @ expected[p]) < 1 - SAME]
    check.missing = sorted(set(expected) - held)
    return check


def repair_templates(sessions: SessionFactory, faces: VectorIndex, templates: VectorIndex,
                     model_row_id: int, check: TemplateCheck) -> int:
    """Rewrite what check_templates found; returns the persons fixed."""
    refresh_templates(sessions, faces, templates, model_row_id, check.persons())
    return check.problems
