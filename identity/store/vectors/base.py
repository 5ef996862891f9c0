"""The VectorIndex contract: what every vector engine behind the product must do.

Vectors are face embeddings; the point id is the face's uuid and the payload holds
``person_id`` (indexed, for filters and grouping) and ``face_id``. Person templates use
the same contract, one point per person. Scores are cosine
similarities (higher is closer). Implementations return fresh objects, never views
of internal state, and raise the same error types for the same mistakes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from identity.errors import DimensionMismatch, InvalidVector
from identity.serialize import json_field


@dataclass(frozen=True)
class PurgeResult:
    """What VectorIndex.purge() did, for the erasure report; each engine says what applies to it."""

    engine: str
    method: str
    points_kept: int | None = field(default=None, metadata=json_field(omit_if_none=True))  # a rebuilt shard
    vacuum_finished: bool | None = field(default=None, metadata=json_field(omit_if_none=True))  # a server's vacuum
    seconds: float | None = field(default=None, metadata=json_field(omit_if_none=True))
    not_forced: list[str] | None = field(default=None, metadata=json_field(omit_if_none=True))


@dataclass(frozen=True)
class VectorPoint:
    face_id: uuid.UUID
    person_id: uuid.UUID
    vector: np.ndarray  # float32, shape (dim,); normalised by the engine (cosine)


@dataclass(frozen=True)
class VectorHit:
    face_id: uuid.UUID
    person_id: uuid.UUID
    score: float


@dataclass(frozen=True)
class PersonHit:
    """One person among the results, with their best-scoring faces (best first)."""

    person_id: uuid.UUID
    score: float  # the best face's score
    faces: tuple[VectorHit, ...]


@runtime_checkable
class VectorIndex(Protocol):
    """One collection of face vectors for one model version."""

    dim: int
    collection: str

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points; returns once the write is durable and searchable."""

    def delete(self, face_ids: Sequence[uuid.UUID]) -> None:
        """Delete points by face id; unknown ids are ignored."""

    def delete_person(self, person_id: uuid.UUID) -> None:
        """Delete every point whose payload person_id matches."""

    def search(self, vector: np.ndarray, k: int, person_ids: Sequence[uuid.UUID] | None = None) -> list[VectorHit]:
        """The k nearest faces, best first, optionally only among the given persons."""

    def search_batch(self, vectors: np.ndarray, k: int) -> list[list[VectorHit]]:
        """search() for each row of a (n, dim) matrix, in one call where the engine allows."""

    def search_persons(
        self,
        vector: np.ndarray,
        k: int,
        faces_per_person: int = 3,
        person_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[PersonHit]:
        """The k best distinct persons, best first; a person's many faces never crowd others out."""

    def vectors(self, face_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        """The stored (unit) vectors of the given faces; unknown ids are left out."""

    def set_person(self, face_ids: Sequence[uuid.UUID], person_id: uuid.UUID) -> None:
        """Re-label faces as another person's (merges, moves); unknown ids are ignored."""

    def count(self) -> int:
        """Number of points in the collection."""

    def iter_ids(self, batch_size: int = 1000) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        """Every (face_id, person_id) pair held, in no particular order."""

    def optimize(self) -> None:
        """Build pending search indexes now; engines that index in the background return at once.

        The embedded engine has no background optimizer: it indexes a segment as upserts fill it
        past its exact-scan size, and this indexes the rest (and merges small segments). Call it
        after a bulk load or when an enrollment batch is done.
        """

    def unindexed(self) -> int:
        """Points a search answers by exact scan, outside any search graph (0 for engines that index
        by themselves, or that have no graph to build)."""

    def purge(self) -> PurgeResult:
        """Make deletions physical: deleted points' vectors, int8 copies and payloads leave the data files.

        delete() and delete_person() only mark points deleted (searches skip them); erasure
        calls this afterwards. Returns what was done, for the erasure report.
        """

    def close(self) -> None:
        """Release the engine (for the embedded engine: its exclusive lock)."""

    def __enter__(self) -> VectorIndex: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class FaceIndex(VectorIndex, Protocol):
    """A model's face collection, with its person templates beside it."""

    def templates(self) -> VectorIndex:
        """The model's person templates, created if missing; the caller closes it.

        One point per person: its id and payload ``person_id`` are the person's uuid (so
        ``VectorHit.face_id == person_id``).
        """

    def sibling(self, kind: str) -> VectorIndex:
        """The model's collection of another kind (TEMPLATES, UNKNOWN), created if missing; the caller closes it."""


FACES = "faces"
TEMPLATES = "templates"
UNKNOWN = "unknown"  # faces searches returned as unknown, kept only where a setting says so


def collection_name(model_id: str, kind: str = FACES) -> str:
    """A model's collection: ``faces_<model slug>`` for face vectors, ``templates_<model slug>`` for templates.

    Which model is current is SQL's to say (the active model); the vector store only holds
    one collection of each kind per model.
    """
    return f"{kind}_" + re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")


def sibling_name(faces_collection: str, kind: str) -> str:
    """The collection of `kind` that goes with a face collection (whatever its exact name)."""
    return kind + faces_collection[len(FACES) :]


def as_matrix(vectors: np.ndarray | Sequence[np.ndarray], dim: int) -> np.ndarray:
    """A float32 (n, dim) matrix of unit rows, or DimensionMismatch naming both sizes."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        got = matrix.shape[-1] if matrix.ndim else 0
        raise DimensionMismatch(f"vector has {got} dimensions, the collection expects {dim}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise InvalidVector("vector is zero or not finite; cannot use it for cosine search")
    unit: np.ndarray = matrix / norms
    return unit
