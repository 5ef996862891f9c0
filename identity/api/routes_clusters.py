"""/v1/clusters: the clusters of unlabelled faces, as `identity cluster ...` (list, show, name, split, merge, discard).

Roles as the review UI's: an audit (READ) key lists and shows, an ENROLL key names, corrects and discards.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from identity.api.auth import caller
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed
from identity.api.derive import derived
from identity.api.listing import CURSOR, listed, page_model
from identity.serialize import to_json
from identity.services.access.keys import ENROLL, READ, KeyRecord
from identity.services.clustering import clusters as clustering
from identity.services.clustering.clusters import (
    ClusterStatus,
    discard_cluster,
    list_clusters,
    merge_clusters,
    name_cluster,
    show_cluster,
    split_cluster,
)
from identity.services.paging import decode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["clusters"])

ClusterFace = derived("ClusterFace", clustering.ClusterFace)
Cluster = derived("Cluster", clustering.ClusterView, faces=list[ClusterFace])  # type: ignore[valid-type]
ClusterPage = page_model("ClusterPage", Cluster)
NamedCluster = derived("NamedCluster", clustering.NamedCluster)


class ClusterName(BaseModel):
    """Name a cluster for an existing person or a new one, one of them."""

    model_config = ConfigDict(extra="forbid")
    person: str | None = Field(None, description="an existing person's external id or uuid")
    new: str | None = Field(None, min_length=1, max_length=255, description="a new person's external id")
    display_name: str | None = Field(None, max_length=255, description="with `new`: the display name")


class ClusterSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faces: list[str] = Field(min_length=1, description="face keys (GET /v1/clusters/{id}) to move into a new cluster")


class ClusterMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clusters: list[str] = Field(min_length=1, description="clusters folded into this one")


class Discarded(BaseModel):
    cluster_id: str
    status: ClusterStatus
    unknown_faces_erased: dict[str, Any] = Field(
        description="kept unknown faces erased: `rows`, and the `vectors` purge"
    )


@router.get("/clusters", response_model=ClusterPage, **keyed("listClusters", 422))
def clusters(
    status: ClusterStatus | None = None,
    min_size: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(READ)),
) -> dict[str, Any]:
    """Stored clusters, biggest first (as `identity cluster list --json`), a page at a time."""
    offset = decode_cursor(cursor)
    views = list_clusters(ctx.core, status.value if status else None, min_size=min_size)
    return listed(page_of(views[offset : offset + limit + 1], offset, limit, len(views)))


@router.get("/clusters/{cluster}", response_model=Cluster, **keyed("getCluster", 404, 422))
def cluster(cluster: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(READ))) -> dict[str, Any]:
    """A cluster's faces and their photos (`identity cluster show --json`)."""
    return to_json(show_cluster(ctx.core, cluster))


@router.post("/clusters/{cluster}/name", response_model=NamedCluster, **keyed("nameCluster", 404, 409, body="json"))
def name(
    cluster: str, naming: ClusterName, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ENROLL))
) -> dict[str, Any]:
    """Enroll the cluster's faces for a person, through the normal enrollment (`identity cluster name --json`)."""
    named = name_cluster(ctx.core, cluster, naming.person, naming.new, naming.display_name, key.name)
    return to_json(named)


@router.post("/clusters/{cluster}/split", response_model=list[Cluster], **keyed("splitCluster", 404, 409, body="json"))  # type: ignore[valid-type]
def split(
    cluster: str, split: ClusterSplit, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ENROLL))
) -> list[dict[str, Any]]:
    """Move some faces of a cluster into a new one; both are then `edited` (the cluster and the new one)."""
    return [to_json(view) for view in split_cluster(ctx.core, cluster, split.faces, key.name)]


@router.post("/clusters/{cluster}/merge", response_model=Cluster, **keyed("mergeClusters", 404, 409, body="json"))
def merge(
    cluster: str, merge: ClusterMerge, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ENROLL))
) -> dict[str, Any]:
    """Fold the given clusters into this one (one person); refused where two hold a face of one photo."""
    return to_json(merge_clusters(ctx.core, [cluster, *merge.clusters], key.name))


@router.post("/clusters/{cluster}/discard", response_model=Discarded, **keyed("discardCluster", 404, 409, 422))
def discard(cluster: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ENROLL))) -> dict[str, Any]:
    """Not a person to enroll: kept as discarded, its kept unknown faces erased now."""
    return to_json(discard_cluster(ctx.core, cluster, key.name))
