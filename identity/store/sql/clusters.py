"""Face clusters: groups of unlabelled faces kept until a reviewer names or discards them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from identity.errors import NotFound
from identity.store.sql.tables import ClusterMember, FaceCluster


class ClusterStatus(StrEnum):
    open = "open"
    edited = "edited"  # open, corrected by hand (split or merged): a re-run leaves it as it is
    named = "named"
    discarded = "discarded"


OPEN, EDITED, NAMED, DISCARDED = ClusterStatus
NAMEABLE = (OPEN, EDITED)


def replace_open_clusters(session: Session, scope: str, clusters: Sequence[FaceCluster]) -> None:
    """A re-run's result: the scope's untouched open clusters give way to `clusters`; a cluster whose id
    (its members' digest) is already stored keeps its row and state."""
    session.execute(delete(FaceCluster).where(FaceCluster.scope == scope, FaceCluster.status == OPEN))
    existing = set(session.scalars(select(FaceCluster.id).where(FaceCluster.id.in_([c.id for c in clusters]))))
    session.add_all([cluster for cluster in clusters if cluster.id not in existing])


def settled_face_keys(session: Session, scope: str) -> set[str]:
    """Faces of the scope that a reviewer has dealt with (named, discarded, or edited clusters)."""
    return set(
        session.scalars(
            select(ClusterMember.face_key)
            .join(FaceCluster)
            .where(FaceCluster.scope == scope, FaceCluster.status != OPEN)
        )
    )


def get_cluster(session: Session, cluster_id: str) -> FaceCluster:
    cluster = session.scalars(
        select(FaceCluster).where(FaceCluster.id == cluster_id).options(selectinload(FaceCluster.members))
    ).first()
    if cluster is None:
        raise NotFound(f"no cluster {cluster_id!r} (identity cluster list shows them)")
    return cluster


def clusters(session: Session, status: str | None = None, scope: str | None = None) -> list[FaceCluster]:
    stmt = select(FaceCluster).options(selectinload(FaceCluster.members))
    if status is not None:
        stmt = stmt.where(FaceCluster.status == status)
    if scope is not None:
        stmt = stmt.where(FaceCluster.scope == scope)
    return list(session.scalars(stmt))


def delete_cluster_row(session: Session, cluster_id: str) -> None:
    """Only the row: a merge moved its members first (ON DELETE CASCADE takes any left)."""
    session.execute(delete(FaceCluster).where(FaceCluster.id == cluster_id))
