"""What the engines share: the payload layout, argument checks and per-person grouping."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from identity.errors import DimensionMismatch
from identity.store.vectors.base import PersonHit, VectorHit, VectorPoint, as_matrix

PERSON_KEY = "person_id"
FACE_KEY = "face_id"

# Both engines keep an int8 copy of the vectors for the graph and rescore the best
# candidates with the float originals, so returned scores stay exact. On 100k x 512-d
# (benchmarks/vector_index.py) it built HNSW ~5x faster and searched ~4x faster than
# float at the same recall. Clipping at the 0.99 quantile keeps outlier components from
# wasting the 8 bits; oversampling 2 rescores 2k candidates.
INT8_QUANTILE = 0.99
OVERSAMPLING = 2.0


def point_matrix(points: Sequence[VectorPoint], dim: int) -> np.ndarray:
    """The points' vectors as unit rows, validated before anything is written."""
    for point in points:
        # Checked one by one: a ragged batch would otherwise fail inside numpy, not as ours.
        if np.shape(point.vector) != (dim,):
            got = np.shape(point.vector)[-1] if np.ndim(point.vector) else 0
            raise DimensionMismatch(f"vector has {got} dimensions, the collection expects {dim}")
    return as_matrix(np.stack([point.vector for point in points]), dim)


def payload(point: VectorPoint) -> dict[str, str]:
    return {PERSON_KEY: str(point.person_id), FACE_KEY: str(point.face_id)}


def person_of(point_payload: Mapping[str, Any] | None) -> uuid.UUID:
    return uuid.UUID(str((point_payload or {})[PERSON_KEY]))


def as_uuid(point_id: Any) -> uuid.UUID:
    # The embedded engine gives ids as UUIDs already: a search makes ~100 hits, so no needless re-parse.
    return point_id if isinstance(point_id, uuid.UUID) else uuid.UUID(str(point_id))


def to_hit(point_id: Any, point_payload: Mapping[str, Any] | None, score: float) -> VectorHit:
    return VectorHit(face_id=as_uuid(point_id), person_id=person_of(point_payload), score=float(score))


def check_k(k: int, faces_per_person: int = 1) -> None:
    if k < 1 or faces_per_person < 1:
        raise ValueError(f"k and faces_per_person must be at least 1, got {k} and {faces_per_person}")


def group_hits(hits: Iterable[VectorHit], k: int, faces_per_person: int) -> list[PersonHit]:
    """The first k persons of best-first hits, each with up to faces_per_person best faces."""
    groups: dict[uuid.UUID, list[VectorHit]] = {}
    full = 0
    for hit in hits:
        faces = groups.get(hit.person_id)
        if faces is None and len(groups) < k:
            groups[hit.person_id] = faces = []
        if faces is not None and len(faces) < faces_per_person:
            faces.append(hit)
            full += len(faces) == faces_per_person
            if full == k:
                break
    return [PersonHit(person, faces[0].score, tuple(faces)) for person, faces in groups.items()]
