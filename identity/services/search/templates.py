"""Person templates checked against their recomputation (`identity doctor`, `identity reindex`) and repaired.

What a template is, and how it is written, is identity.app.templates' (the application core
back-fills a store from before templates when it is prepared for writes).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from identity.app.templates import BATCH, expected_templates, refresh_templates
from identity.store.sql.db import SessionFactory
from identity.store.vectors import VectorIndex
from identity.store.vectors.unit_vectors import is_unit

SAME = 1e-4  # a stored template within this cosine distance of its recomputation is current


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


def check_templates(
    sessions: SessionFactory,
    faces: VectorIndex,
    templates: VectorIndex,
    model_row_id: int,
    damaged: set[uuid.UUID] | None = None,
) -> TemplateCheck:
    """Every template against its recomputation from the person's indexed faces; a damaged stored template
    is stale. Damaged face vectors go into `damaged` (given: the caller repairs them), else raise."""
    expected = expected_templates(sessions, faces, model_row_id, None, damaged)
    held = {person_id for person_id, _ in templates.iter_ids()}
    check = TemplateCheck(orphaned=sorted(held - set(expected)))
    present = sorted(set(expected) & held)
    for start in range(0, len(present), BATCH):
        chunk = present[start : start + BATCH]
        stored = templates.vectors(chunk)
        check.stale += [
            p for p in chunk if p not in stored or not is_unit(stored[p]) or float(stored[p] @ expected[p]) < 1 - SAME
        ]
    check.missing = sorted(set(expected) - held)
    return check


def repair_templates(
    sessions: SessionFactory, faces: VectorIndex, templates: VectorIndex, model_row_id: int, check: TemplateCheck
) -> int:
    """Rewrite what check_templates found; returns the persons fixed."""
    refresh_templates(sessions, faces, templates, model_row_id, check.persons())
    return check.problems
