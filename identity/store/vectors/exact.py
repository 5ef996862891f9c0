"""ExactIndex: brute-force cosine search over a numpy matrix, in memory.

The benchmark's ground truth and a baseline for small evaluations. It keeps the same
contract as the engines, so the same contract tests hold it to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import numpy as np

from identity.store.vectors.base import PersonHit, PurgeResult, VectorHit, VectorPoint, as_matrix
from identity.store.vectors.common import check_k, group_hits, point_matrix

QUERY_CHUNK = 256  # rows of a batch scored at once: bounds the (chunk, n) score matrix


class ExactIndex:
    def __init__(self, dim: int, collection: str = "exact") -> None:
        self.dim = dim
        self.collection = collection
        self._vectors = np.empty((1024, dim), dtype=np.float32)  # rows [0, size) are live
        self._codes = np.empty(1024, dtype=np.int64)  # person code per row, for filters
        self._faces: list[uuid.UUID] = []
        self._rows: dict[uuid.UUID, int] = {}
        self._code_of: dict[uuid.UUID, int] = {}
        self._person_of: list[uuid.UUID] = []  # code -> person id

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        matrix = point_matrix(points, self.dim)
        for point, vector in zip(points, matrix, strict=True):
            row = self._rows.get(point.face_id)
            if row is None:
                row = len(self._faces)
                self._reserve(row + 1)
                self._rows[point.face_id] = row
                self._faces.append(point.face_id)
            self._vectors[row] = vector
            self._codes[row] = self._code(point.person_id)

    def delete(self, face_ids: Sequence[uuid.UUID]) -> None:
        for face_id in face_ids:
            row = self._rows.pop(face_id, None)
            if row is None:
                continue
            last = len(self._faces) - 1
            moved = self._faces.pop()
            if row != last:  # fill the hole with the last row so live rows stay contiguous
                self._vectors[row] = self._vectors[last]
                self._codes[row] = self._codes[last]
                self._faces[row] = moved
                self._rows[moved] = row

    def delete_person(self, person_id: uuid.UUID) -> None:
        code = self._code_of.get(person_id)
        if code is not None:
            size = len(self._faces)
            self.delete([self._faces[i] for i in np.flatnonzero(self._codes[:size] == code)])

    def search(self, vector: np.ndarray, k: int, person_ids: Sequence[uuid.UUID] | None = None) -> list[VectorHit]:
        check_k(k)
        rows, scores = self._scores(as_matrix(vector, self.dim)[0], person_ids)
        top = _top(scores, k)
        return [self._hit(rows[i], scores[i]) for i in top]

    def search_batch(self, vectors: np.ndarray, k: int) -> list[list[VectorHit]]:
        check_k(k)
        matrix = as_matrix(vectors, self.dim)
        live = self._vectors[: len(self._faces)]
        results: list[list[VectorHit]] = []
        for start in range(0, len(matrix), QUERY_CHUNK):
            scores = matrix[start : start + QUERY_CHUNK] @ live.T
            results += [[self._hit(i, row[i]) for i in _top(row, k)] for row in scores]
        return results

    def search_persons(
        self,
        vector: np.ndarray,
        k: int,
        faces_per_person: int = 3,
        person_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[PersonHit]:
        check_k(k, faces_per_person)
        rows, scores = self._scores(as_matrix(vector, self.dim)[0], person_ids)
        order = np.argsort(-scores, kind="stable")
        return group_hits((self._hit(rows[i], scores[i]) for i in order), k, faces_per_person)

    def vectors(self, face_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        return {f: self._vectors[self._rows[f]].copy() for f in face_ids if f in self._rows}

    def set_person(self, face_ids: Sequence[uuid.UUID], person_id: uuid.UUID) -> None:
        for face_id in face_ids:
            row = self._rows.get(face_id)
            if row is not None:
                self._codes[row] = self._code(person_id)

    def count(self) -> int:
        return len(self._faces)

    def iter_ids(self, batch_size: int = 1000) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        snapshot = [(face, self._person_of[self._codes[row]]) for row, face in enumerate(self._faces)]
        yield from snapshot

    def optimize(self) -> None:
        """Nothing to build: every search is a full scan."""

    def unindexed(self) -> int:
        """0: a full scan is what this index is for, not a graph it has yet to build."""
        return 0

    def purge(self) -> PurgeResult:
        """Zero the rows past the live ones: a deleted vector may still sit there."""
        self._vectors[len(self._faces) :] = 0
        return PurgeResult("exact", "in memory; freed rows zeroed")

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ExactIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _code(self, person_id: uuid.UUID) -> int:
        code = self._code_of.get(person_id)
        if code is None:
            code = self._code_of[person_id] = len(self._person_of)
            self._person_of.append(person_id)
        return code

    def _reserve(self, size: int) -> None:
        if size > len(self._vectors):
            capacity = max(size, 2 * len(self._vectors))
            self._vectors = np.resize(self._vectors, (capacity, self.dim))
            self._codes = np.resize(self._codes, capacity)

    def _scores(self, query: np.ndarray, person_ids: Sequence[uuid.UUID] | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidate rows and their cosine scores, limited to the given persons if any."""
        size = len(self._faces)
        if person_ids is None:  # a slice, not a fancy index: no copy of the matrix
            return np.arange(size), self._vectors[:size] @ query
        codes = [self._code_of[p] for p in person_ids if p in self._code_of]
        rows = np.flatnonzero(np.isin(self._codes[:size], codes))
        return rows, self._vectors[rows] @ query

    def _hit(self, row: int, score: float) -> VectorHit:
        return VectorHit(self._faces[row], self._person_of[self._codes[row]], float(score))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")
