"""Synthetic persons written as a bulk load writes them: person, image and face rows in SQL, face vectors and
person templates in the vector store (no photos). Used by search_latency.py and by the tests that need a
gallery larger than photos allow."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
from sqlalchemy import insert

from identity.app.deployment import Deployment
from identity.app.templates import template_of
from identity.store.sql.tables import Face, FaceStatus, Image, Person, utcnow
from identity.store.vectors import VectorPoint

NOISE = 0.8  # how far a person's faces lie from their centre


def add_persons(dep: Deployment, first: int, centres: np.ndarray, per_person: int, rng: np.random.Generator) -> None:
    """Persons `first`, `first` + 1, ... (external ids synthetic-NNNNNN), one a row of `centres`, each with
    `per_person` faces drawn around it, written in one transaction and one upsert per collection."""
    now = utcnow()
    person_rows, image_rows, face_rows, points, templates = [], [], [], [], []
    for p, centre in enumerate(centres, start=first):
        person_id = uuid.uuid4()
        person_rows.append(
            {
                "id": person_id,
                "external_id": f"synthetic-{p:06d}",
                "display_name": None,
                "attributes": {},
                "created_at": now,
                "updated_at": now,
            }
        )
        for k in range(per_person):
            image_id, face_id = uuid.uuid4(), uuid.uuid4()
            image_rows.append(
                {
                    "id": image_id,
                    "sha256": hashlib.sha256(face_id.bytes).hexdigest(),
                    "source_path": f"/synthetic/{p}/{k}.jpg",
                    "size_bytes": 0,
                    "width": 250,
                    "height": 250,
                    "created_at": now,
                }
            )
            face_rows.append(
                {
                    "id": face_id,
                    "person_id": person_id,
                    "image_id": image_id,
                    "model_id": dep.model.id,
                    "bbox": [0, 0, 1, 1],
                    "landmarks": [[0, 0]] * 5,
                    "det_score": 1.0,
                    "status": FaceStatus.indexed,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            vector = centre + rng.normal(scale=NOISE, size=centres.shape[1]).astype(np.float32)
            points.append(VectorPoint(face_id, person_id, vector))
        templates.append(VectorPoint(person_id, person_id, template_of([q.vector for q in points[-per_person:]])))
    with dep.app.sessions() as session, session.begin():
        session.execute(insert(Person), person_rows)
        session.execute(insert(Image), image_rows)
        session.execute(insert(Face), face_rows)
    dep.index.upsert(points)
    dep.templates.upsert(templates)
