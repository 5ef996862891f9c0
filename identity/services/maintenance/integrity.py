"""Integrity of the stored vectors: damaged bytes, damaged shards, and faces the vector store lacks.

SQL is the truth and every stored vector is a unit vector (the engines normalize on write),
so damage shows as a vector that is not finite with norm 1, as a score that is no cosine,
or as an engine that cannot read its files. Where each is caught:

- search: a score outside [-1, 1] (with a little slack) is refused as StoreDamaged naming
  `identity doctor --deep --repair` (check_scores), and a collection holding fewer vectors
  than SQL has indexed faces gives a warning (missing_vectors_warning: two counts, cheap);
- doctor: a sample of the stored face vectors (all with --deep) is read back and checked for
  finite unit norm (check_vectors); the template check flags the faces it reads too. The
  face rows behind them are checked by doctor's own pass (orphans, wrong person). Repair
  deletes a damaged vector and re-enrolls its face from the photo;
- doctor --repair: a shard the engine cannot open or read is set aside (renamed
  `<shard>.damaged-<time>`) and an empty one opened in its place, so that the missing-vectors
  repair re-enrolls every face from its photo (prepare_for_repair); the set-aside shard is
  removed once every face came back (finish_rebuild).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from identity.app.core import App
from identity.app.deployment import Deployment
from identity.app.templates import BATCH
from identity.errors import StoreDamaged
from identity.serialize import json_field
from identity.store.sql.faces import count_indexed_faces
from identity.store.vectors import VectorHit, VectorIndex, remove_set_aside_shards, set_aside_shard
from identity.store.vectors.unit_vectors import is_unit

SAMPLE = 1000  # stored face vectors doctor reads back without --deep
SCORE_SLACK = 1e-3  # float error of a cosine of unit vectors stays far below this


@dataclass
class IntegrityCheck:
    deep: bool = False
    checked: int = 0  # vectors read back by the sample (or all, with --deep)
    damaged: list[str] = field(default_factory=list)  # face ids whose stored vector is not finite unit norm
    rebuilt: list[str] = field(default_factory=list)  # unreadable shards --repair set aside, rebuilt and removed

    @property
    def problems(self) -> int:
        return len(self.damaged)

    def add(self, face_ids: Iterable[uuid.UUID]) -> None:
        self.damaged = sorted(set(self.damaged) | {str(f) for f in face_ids})

    def __json__(self) -> IntegrityFigures:
        return IntegrityFigures(self.deep, self.checked, len(self.damaged), self.rebuilt)


@dataclass(frozen=True)
class IntegrityFigures:
    """The check as `doctor --json` words it: counts, and the shards rebuilt only when there were some."""

    deep: bool
    vectors_checked: int
    damaged_vectors: int
    rebuilt_shards: list[str] = field(metadata=json_field(omit_if_falsy=True))


def check_vectors(faces: VectorIndex, face_ids: Iterable[uuid.UUID], deep: bool) -> IntegrityCheck:
    """Read back a sample of these stored vectors (all when deep) and list those that are not unit vectors."""
    ids = sorted(face_ids)
    chosen = ids if deep or len(ids) <= SAMPLE else random.sample(ids, SAMPLE)
    check = IntegrityCheck(deep=deep, checked=len(chosen))
    for start in range(0, len(chosen), BATCH):
        vectors = faces.vectors(chosen[start : start + BATCH])
        check.add(face_id for face_id, vector in vectors.items() if not is_unit(vector))
    return check


def check_scores(index: VectorIndex, hits: Iterable[VectorHit]) -> None:
    """Refuse a score no cosine can have: the stored vector behind it is damaged."""
    for hit in hits:
        if not -1.0 - SCORE_SLACK <= hit.score <= 1.0 + SCORE_SLACK:  # nan fails both
            collection = getattr(index, "collection", "the vector store")
            raise StoreDamaged(
                f"{collection} returned a score of {hit.score:.4g} for point {hit.face_id}, which no cosine can be: "
                "its stored vectors are damaged; run `identity doctor --deep --repair`",
                collection=str(collection),
                point=str(hit.face_id),
                score=repr(hit.score),
            )


def missing_vectors_warning(app: App) -> list[str]:
    """A warning when SQL lists more indexed faces of the active model than its collection holds
    (a deleted or emptied shard): search would answer from what is left without a word.

    Counted once per deployment, as its gallery size is: a search pays two counts only once.
    """
    dep = app.deployment()
    if dep._missing_vectors is None:
        dep._missing_vectors = _compare_counts(dep)
    return dep._missing_vectors


def _compare_counts(dep: Deployment) -> list[str]:
    with dep.app.sessions() as session:
        indexed = count_indexed_faces(session, dep.model.id)
    held = dep.index.count()
    if held >= indexed:
        return []
    return [
        f"the database lists {indexed} indexed faces of model {dep.model.model_id} but the vector store holds "
        f"{held}: {indexed - held} cannot be found by search; run `identity doctor --repair` to re-enroll them "
        "from their photos"
    ]


def prepare_for_repair(app: App) -> list[str]:
    """The App's deployment prepared for `doctor --repair`'s writes, with every shard of the active model the engine
    cannot open or read set aside (and an empty one in its place); returns the shards set aside."""
    moved: list[str] = []
    while True:
        try:
            app.deployment(write=True)
            break
        except StoreDamaged as exc:
            # each round sets one shard aside (faces, templates, kept unknown faces); never the same one twice
            if not exc.details.get("unopenable") or not app.settings.embedded or len(moved) > 2:
                raise
            set_aside_shard(app.settings, exc.details["path"])
            moved.append(exc.details["path"])
    return moved + set_aside_damaged(app)


def finish_rebuild(app: App, problems_left: int, not_reenrolled: int) -> bool:
    """After a repair that left no problem and enrolled every face again: remove the damaged shards set aside
    (this run's or a stopped run's), whose bytes are biometric data no later erasure would reach. Otherwise
    they are kept, for whoever tries to recover the vectors of faces that could not come back. True: removed."""
    if problems_left or not_reenrolled:
        return False
    remove_set_aside_shards(app.settings)
    return True


def set_aside_damaged(app: App) -> list[str]:
    """Read every vector of the active model's collections; set aside a shard the engine cannot read, and
    return which. Only the embedded engine's shards are files this process can set aside."""
    dep = app.deployment(write=True)
    moved = []
    for index in (dep.index, dep.templates):
        try:
            _read_all(index)
        except StoreDamaged:
            set_aside = getattr(index, "set_aside", None)
            if set_aside is None:  # a Qdrant server's storage is the server's to repair
                raise
            set_aside()
            moved.append(str(getattr(index, "path", index)))
    return moved


def _read_all(index: VectorIndex) -> None:
    batch: list[uuid.UUID] = []
    for point_id, _ in index.iter_ids():
        batch.append(point_id)
        if len(batch) == BATCH:
            index.vectors(batch)
            batch = []
    index.vectors(batch)
