"""Stored vectors read back intact: the engines store unit vectors, so any other norm is damaged bytes.

Every service that reads stored vectors to compute with them reads them through here, so a
damaged vector is never averaged into a template, scored in an audit or clustered: it is
refused as StoreDamaged naming `identity doctor --deep --repair`, or (for doctor's own
checks) left out and reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import numpy as np

from identity.errors import StoreDamaged
from identity.store.vectors import VectorIndex

UNIT = 1e-3  # a stored vector further than this from norm 1 is damaged


def is_unit(vector: np.ndarray) -> bool:
    """Whether a stored vector is finite with unit norm; anything else is damaged bytes, not a face."""
    return bool(np.isfinite(vector).all()) and abs(float(np.linalg.norm(vector)) - 1.0) <= UNIT


def damaged_vectors(index: VectorIndex, bad: Iterable[uuid.UUID]) -> StoreDamaged:
    ids = sorted(str(f) for f in bad)
    collection = getattr(index, "collection", "the vector store")
    return StoreDamaged(
        f"{len(ids)} stored vectors of {collection} are damaged (not of unit norm), e.g. point "
        f"{ids[0]}: run `identity doctor --deep --repair` to re-embed them from their photos",
        collection=str(collection),
        points=ids,
    )


def intact_vectors(
    index: VectorIndex, ids: Sequence[uuid.UUID], damaged: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, np.ndarray]:
    """The stored vectors of these ids; a damaged one raises StoreDamaged, or, when `damaged` is given,
    is left out and added to it."""
    vectors = index.vectors(ids)
    bad = {f for f, v in vectors.items() if not is_unit(v)}
    if bad and damaged is None:
        raise damaged_vectors(index, bad)
    if damaged is not None:
        damaged |= bad
    return {f: v for f, v in vectors.items() if f not in bad}
