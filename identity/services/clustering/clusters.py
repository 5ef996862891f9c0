"""Clustering unlabelled faces into people to enroll: run, review (split, merge, discard), name.

Two sources: a folder of unlabelled photos (`identity cluster DIR`), or the faces that
searches returned as unknown and that settings kept (`identity cluster --from-searches`).
The faces are grouped by identity (identity.services.clustering.algorithms, with the
decision threshold in force); two faces of one photo never share a cluster. Clusters are
stored until a reviewer names or discards them; a cluster's id is a digest of its members,
so a re-run on the same input gives the same ids, and a re-run leaves alone what a
reviewer has dealt with (named, discarded, split or merged clusters).

Naming a cluster enrolls its faces through the normal queue and writer (the same job
states and idempotence as `identity enroll`): each face from its source photo where that
is still readable with the same bytes, else (a kept unknown face whose photo is gone)
from the kept embedding, with its thumbnail stored as the photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment
from identity.errors import IdentityError, ImageError, InvalidArgument, NotFound
from identity.faces import DetectedFace, ImageFaces, Quality, load_image, process_paths_parallel
from identity.faces.types import same_face
from identity.pathnames import fs_path, path_text
from identity.serialize import json_field
from identity.services.clustering.algorithms import DEFAULT_METHOD, ClusterThreshold, cluster_faces
from identity.services.enrollment.duplicates import Duplicate, unique_files
from identity.services.enrollment.inputs import image_files
from identity.services.enrollment.uploads import new_upload_folder
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import JobResult, Outcome, file_digest, process_queue, queue_jobs
from identity.services.records.thumbnails import encode_thumbnail
from identity.services.search.thresholds import pairwise_threshold, resolve_threshold
from identity.services.search.unknown_faces import erase_unknown, expire_unknown
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.clusters import (
    DISCARDED,
    EDITED,
    NAMEABLE,
    NAMED,
    ClusterStatus,
    clusters,
    delete_cluster_row,
    get_cluster,
    replace_open_clusters,
    settled_face_keys,
)
from identity.store.sql.db import transaction
from identity.store.sql.jobs import JobSpec
from identity.store.sql.model_rows import get_model
from identity.store.sql.persons import find_person, get_person, persons_by_id
from identity.store.sql.tables import ClusterMember, FaceCluster
from identity.store.sql.thumbnails import cluster_member_thumbnails
from identity.store.sql.unknown_faces import unknown_faces_by_id, unknown_faces_since
from identity.store.vectors.unit_vectors import intact_vectors

SEARCHES = "searches"
ENROLLED_STATES = ("enrolled", "duplicate")  # the face is the person's once the job ends in one of these


@dataclass(frozen=True)
class ClusterFace:
    face_key: str  # "<image sha256>:<face index>", or a kept unknown face's id
    source_path: str | None
    image_sha256: str
    face_index: int
    bbox: list[float]
    unknown_face_id: str | None

    @classmethod
    def of(cls, member: ClusterMember) -> ClusterFace:
        return cls(
            member.face_key,
            member.source_path,
            member.image_sha256,
            member.face_index,
            member.bbox,
            str(member.unknown_face_id) if member.unknown_face_id else None,
        )


@dataclass(frozen=True)
class ClusterView:
    cluster_id: str
    scope: str
    status: ClusterStatus
    person: str | None  # the external id it was named for
    size: int = field(init=False)  # how many faces (written before them)
    faces: list[ClusterFace]

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.faces))

    @classmethod
    def of(cls, cluster: FaceCluster, person: str | None = None) -> ClusterView:
        return cls(
            cluster.id,
            cluster.scope,
            ClusterStatus(cluster.status),
            person,
            [ClusterFace.of(m) for m in cluster.members],
        )


@dataclass(frozen=True)
class UnreadablePhoto:
    image: str  # path_text of the photo
    error: str  # one line: the path and why


@dataclass
class ClusterRun:
    scope: str
    method: str
    threshold: ClusterThreshold
    faces: int = 0  # clustered in this run
    photos: int = 0
    left_alone: int = 0  # faces already in a cluster a reviewer dealt with
    no_face: int = 0  # photos in which no face was found
    # clustering alone, after detection and embedding
    seconds: float = field(default=0.0, metadata=json_field(name="clustering_seconds", encode=lambda s: round(s, 3)))
    clusters: list[ClusterView] = field(default_factory=list)  # two faces or more, biggest first
    singletons: list[ClusterView] = field(default_factory=list)
    errors: list[UnreadablePhoto] = field(default_factory=list)  # unreadable photos, one line each
    duplicates: list[Duplicate] = field(default_factory=list)  # copies of a photo, clustered once as the first


@dataclass(frozen=True)
class _Face:
    """A face to cluster: where it came from and its embedding."""

    key: str
    sha256: str
    path: str | None
    index: int
    bbox: list[float]
    vector: np.ndarray
    thumbnail: bytes | None  # JPEG of the aligned crop, stored with the member: pages never read the photo
    unknown_face_id: uuid.UUID | None = None


# -- running ---------------------------------------------------------------------------------------


def cluster_folder(
    app: App,
    folder: Path,
    workers: int = 0,
    advance: Callable[[int], None] = lambda n: None,
    on_total: Callable[[int], None] = lambda n: None,
) -> ClusterRun:
    """Detect and embed every photo under `folder` (no labels needed), then cluster their faces."""
    dep = app.deployment(write=True)
    images, unreadable = image_files(folder)
    paths, duplicates = unique_files([str(p) for p in images])
    on_total(len(paths))
    run = _new_run(dep, f"folder:{path_text(folder.expanduser().resolve())}")
    run.duplicates = duplicates
    run.errors += [UnreadablePhoto(path_text(path), f"{path_text(path)}: {reason}") for path, reason in unreadable]
    faces: list[_Face] = []
    for path, outcome in process_paths_parallel(dep.settings, paths, workers or dep.settings.worker_count):
        advance(1)
        if isinstance(outcome, ImageError):
            run.errors.append(UnreadablePhoto(path_text(path), f"{path_text(path)}: {outcome.reason}"))
            continue
        run.photos += 1
        run.no_face += not outcome.faces
        faces += [
            _Face(
                f"{outcome.sha256}:{i}",
                outcome.sha256,
                path_text(path),
                i,
                _box(face),
                face.embedding,
                encode_thumbnail(face.crop),
            )
            for i, face in enumerate(outcome.faces)
        ]
    return _cluster_and_store(dep, run, faces)


def cluster_searches(app: App, since: datetime | None = None) -> ClusterRun:
    """Cluster the faces searches returned as unknown and settings kept (expired ones are erased first)."""
    dep = app.deployment(write=True)
    expire_unknown(app)
    with app.sessions() as session:
        rows = unknown_faces_since(session, dep.model.id, since)
    vectors = intact_vectors(dep.unknown_faces(), [row.id for row in rows]) if rows else {}
    run = _new_run(dep, SEARCHES)
    run.photos = len({row.image_sha256 for row in rows})
    faces = [
        _Face(
            str(row.id),
            row.image_sha256,
            row.source_path,
            row.face_index,
            row.bbox,
            vectors[row.id],
            row.thumbnail,
            row.id,
        )
        for row in rows
        if row.id in vectors
    ]  # a row whose vector a crash never wrote is left to expire
    return _cluster_and_store(dep, run, faces)


def _new_run(dep: Deployment, scope: str) -> ClusterRun:
    threshold = cluster_threshold(dep.app)
    return ClusterRun(scope, DEFAULT_METHOD, threshold)


def cluster_threshold(app: App) -> ClusterThreshold:
    """The decision threshold in force (the FPIR-calibrated one where set) and the 1:1 cosine."""
    dep = app.deployment()
    decision = resolve_threshold(dep.model, dep.pipeline)
    return ClusterThreshold(decision.value, decision.rule, pairwise_threshold(dep.model, dep.pipeline))


def _cluster_and_store(dep: Deployment, run: ClusterRun, faces: list[_Face]) -> ClusterRun:
    with dep.app.sessions() as session:
        settled = settled_face_keys(session, run.scope)
    # Input order fixed: stable ids. One face per key: a copy that escaped unique_files (changed
    # between hashing and reading) would give two clusters one id.
    todo = sorted({f.key: f for f in reversed(faces) if f.key not in settled}.values(), key=lambda f: f.key)
    run.left_alone, run.faces = len(faces) - len(todo), len(todo)
    started = time.perf_counter()
    labels = (
        cluster_faces(np.stack([f.vector for f in todo]), [f.sha256 for f in todo], run.threshold, run.method)
        if len(todo) > 1
        else np.zeros(len(todo), int)
    )
    run.seconds = time.perf_counter() - started
    groups: dict[int, list[_Face]] = {}
    for face, label in zip(todo, labels):
        groups.setdefault(int(label), []).append(face)
    rows = [_cluster_row(dep, run.scope, members) for members in groups.values()]
    with transaction(dep.app.sessions) as session:
        replace_open_clusters(session, run.scope, rows)
    with dep.app.sessions() as session:
        stored = [ClusterView.of(get_cluster(session, row.id)) for row in rows]
    stored.sort(key=lambda c: (-c.size, c.cluster_id))
    run.clusters = [c for c in stored if c.size > 1]
    run.singletons = [c for c in stored if c.size == 1]
    return run


def member_thumbnails(app: App, clusters: Sequence[ClusterView], per_cluster: int | None = None) -> dict[str, bytes]:
    """The stored JPEGs of the clusters' faces (the first `per_cluster` of each), by face key: the member's
    own, else (a member made before 0012) the one kept with its unknown face; faces with neither are left out."""
    keys = [(c.cluster_id, f) for c in clusters for f in c.faces[:per_cluster]]
    with app.sessions() as session:
        stored = cluster_member_thumbnails(session, [(cluster, f.face_key) for cluster, f in keys])
        missing = [f for cluster, f in keys if (cluster, f.face_key) not in stored]
        kept = unknown_faces_by_id(session, [uuid.UUID(f.unknown_face_id) for f in missing if f.unknown_face_id])
    found = {f.face_key: stored[(cluster, f.face_key)] for cluster, f in keys if (cluster, f.face_key) in stored}
    for face in missing:
        row = kept.get(uuid.UUID(face.unknown_face_id)) if face.unknown_face_id else None
        if row is not None and row.thumbnail:
            found[face.face_key] = row.thumbnail
    return found


def cluster_id(model_id: str, face_keys: Sequence[str]) -> str:
    """A digest of the members: the same faces give the same id on every run."""
    digest = hashlib.sha256("\n".join([model_id, *sorted(face_keys)]).encode()).hexdigest()
    return "c" + digest[:11]


def _cluster_row(dep: Deployment, scope: str, members: Sequence[_Face]) -> FaceCluster:
    return FaceCluster(
        id=cluster_id(dep.model.model_id, [f.key for f in members]),
        scope=scope,
        model_id=dep.model.id,
        status="open",
        members=[
            ClusterMember(
                face_key=f.key,
                image_sha256=f.sha256,
                source_path=f.path,
                face_index=f.index,
                bbox=f.bbox,
                unknown_face_id=f.unknown_face_id,
                thumbnail=f.thumbnail,
            )
            for f in members
        ],
    )


def _box(face: DetectedFace) -> list[float]:
    return [round(float(v), 1) for v in face.bbox]


# -- reviewing -------------------------------------------------------------------------------------


def list_clusters(
    app: App, status: str | None = None, scope: str | None = None, min_size: int = 1
) -> list[ClusterView]:
    """Stored clusters, biggest first."""
    with app.sessions() as session:
        rows = clusters(session, status, scope)
        named = _named_persons(session, rows)
    views = [ClusterView.of(row, named.get(row.id)) for row in rows if len(row.members) >= min_size]
    return sorted(views, key=lambda c: (-c.size, c.cluster_id))


def show_cluster(app: App, ref: str) -> ClusterView:
    with app.sessions() as session:
        row = get_cluster(session, ref)
        return ClusterView.of(row, _named_persons(session, [row]).get(row.id))


def _named_persons(session: Any, rows: Sequence[FaceCluster]) -> dict[str, str]:
    """The external id each named cluster was named for (one query for all of them)."""
    people = persons_by_id(session, {row.person_id for row in rows if row.person_id is not None})
    return {row.id: people[row.person_id].external_id for row in rows if row.person_id in people}


def split_cluster(app: App, ref: str, face_keys: Sequence[str], actor: str | None = None) -> list[ClusterView]:
    """Move the given faces of a cluster into a new cluster of their own; both are then `edited`."""
    with transaction(app.sessions) as session:
        cluster = _nameable(session, ref)
        moving = [m for m in cluster.members if m.face_key in set(face_keys)]
        unknown = set(face_keys) - {m.face_key for m in moving}
        if unknown:
            raise InvalidArgument(f"cluster {ref} holds no face {sorted(unknown)[0]!r} (identity cluster show {ref})")
        if not moving or len(moving) == len(cluster.members):
            raise InvalidArgument(f"split {ref}: name some but not all of its {len(cluster.members)} faces")
        model_id = get_model(session, cluster.model_id).model_id
        new = FaceCluster(
            id=cluster_id(model_id, [m.face_key for m in moving]),
            scope=cluster.scope,
            model_id=cluster.model_id,
            status=EDITED,
            decided_by=resolve_actor(actor),
        )
        if session.get(FaceCluster, new.id) is not None:
            raise InvalidArgument(f"a cluster of exactly those faces exists already: {new.id}")
        session.add(new)
        session.flush()
        for member in moving:
            member.cluster_id = new.id
        cluster.status, cluster.decided_by = EDITED, resolve_actor(actor)
        ids = [cluster.id, new.id]
    return [show_cluster(app, cluster_ref) for cluster_ref in ids]


def merge_clusters(app: App, refs: Sequence[str], actor: str | None = None) -> ClusterView:
    """Fold the other clusters into the first; refused where two of them hold a face of one photo."""
    if len(set(refs)) < 2:
        raise InvalidArgument("merge needs two clusters or more")
    with transaction(app.sessions) as session:
        keep, *others = [_nameable(session, ref) for ref in dict.fromkeys(refs)]
        seen = {m.image_sha256: keep.id for m in keep.members}
        for other in others:
            for member in other.members:
                if member.image_sha256 in seen:
                    raise InvalidArgument(
                        f"clusters {seen[member.image_sha256]} and {other.id} both hold a face of "
                        f"photo {member.source_path or member.image_sha256}: one photo shows "
                        "two people, so they cannot be one person"
                    )
                seen[member.image_sha256] = other.id
        for other in others:
            for member in other.members:
                member.cluster_id = keep.id
        session.flush()
        for other in others:  # its members are the first's now: the row goes alone
            session.expunge(other)
            delete_cluster_row(session, other.id)
        keep.status, keep.decided_by = EDITED, resolve_actor(actor)
    return show_cluster(app, keep.id)


def discard_cluster(app: App, ref: str, actor: str | None = None) -> dict[str, Any]:
    """Not a person to enroll: the cluster is kept as discarded (a re-run leaves its faces out), and the kept
    unknown faces in it are erased now rather than at the end of their retention."""
    app.deployment(write=True)  # a writing command: the store bound and the model recorded first
    with transaction(app.sessions) as session:
        cluster = _nameable(session, ref)
        unknown = [m.unknown_face_id for m in cluster.members if m.unknown_face_id is not None]
        cluster.status, cluster.decided_by = DISCARDED, resolve_actor(actor)
        record_audit_event(
            session,
            resolve_actor(actor),
            "cluster discarded",
            subject=cluster.id,
            details={"faces": len(cluster.members)},
        )
    return {"cluster_id": ref, "status": DISCARDED, "unknown_faces_erased": erase_unknown(app, unknown)}


def _nameable(session: Any, ref: str) -> FaceCluster:
    cluster = get_cluster(session, ref)
    if cluster.status not in NAMEABLE:
        raise InvalidArgument(f"cluster {ref} is {cluster.status} already")
    return cluster


# -- naming ----------------------------------------------------------------------------------------


@dataclass
class NamedCluster:
    cluster_id: str
    person: str
    created_person: bool
    states: dict[str, int]  # job state -> faces
    faces: list[dict[str, Any]]  # per face: its key, the job's state and reason


def name_cluster(
    app: App,
    ref: str,
    person_ref: str | None = None,
    new_external_id: str | None = None,
    display_name: str | None = None,
    actor: str | None = None,
) -> NamedCluster:
    """Enroll the cluster's faces for an existing person (`person_ref`) or a new one (`new_external_id`)."""
    dep = app.deployment(write=True)
    if (person_ref is None) == (new_external_id is None):
        raise InvalidArgument("name a cluster for an existing person (--person) or a new one (--new), one of them")
    who = resolve_actor(actor)
    with app.sessions() as session:
        cluster = _nameable(session, ref)
        members = list(cluster.members)
        if person_ref is not None:
            external_id, display_name = get_person(session, person_ref).external_id, None
        else:
            if find_person(session, new_external_id) is not None:
                raise InvalidArgument(f"a person {new_external_id} exists already: name the cluster with --person")
            external_id = new_external_id
        kept = unknown_faces_by_id(session, [m.unknown_face_id for m in members if m.unknown_face_id])
    sources = {m.face_key: _face_source(dep, m, kept.get(m.unknown_face_id)) for m in members}
    specs = [JobSpec(source.path, external_id, display_name) for source in sources.values()]
    batch, _ = queue_jobs(app, specs)
    outcomes = {source.path: source for source in sources.values()}
    results: dict[str, JobResult] = {}

    def analyse(paths: Iterator[str]) -> Iterator[tuple[str, Outcome]]:
        for path in paths:
            yield path, outcomes[path_text(path)].analyse(dep)  # process_queue gives the name on disk

    def collect(result: JobResult) -> None:
        results[result.source_path] = result

    process_queue(app, EnrollmentWriter(dep, "dominant"), batch, 1, collect, analyse=analyse)
    faces = [
        {
            "face_key": key,
            "source": source.path,
            "state": results[source.path].outcome,
            "reason": results[source.path].reason,
        }
        for key, source in sources.items()
        if source.path in results
    ]
    enrolled = [
        key
        for key, source in sources.items()
        if source.path in results and results[source.path].outcome in ENROLLED_STATES
    ]
    with transaction(app.sessions) as session:
        person = find_person(session, external_id)
        cluster = get_cluster(session, ref)
        if person is not None and enrolled:
            cluster.status, cluster.person_id, cluster.decided_by = NAMED, person.id, who
        record_audit_event(
            session,
            who,
            "cluster named",
            person_id=person.id if person else None,
            subject=external_id,
            details={"cluster_id": ref, "faces": len(members), "enrolled": len(enrolled)},
        )
    # The faces now enrolled are the person's: their kept unknown copies go.
    erase_unknown(app, [sources[key].unknown_face_id for key in enrolled if sources[key].unknown_face_id])
    states: dict[str, int] = {}
    for face in faces:
        states[face["state"]] = states.get(face["state"], 0) + 1
    return NamedCluster(ref, external_id, new_external_id is not None and person is not None, states, faces)


@dataclass(frozen=True)
class _FaceSource:
    """Where a member's enrollment reads its face: its photo (re-detected, the face picked by its box),
    or the kept embedding with its thumbnail saved as the photo."""

    path: str
    bbox: list[float]
    unknown_face_id: uuid.UUID | None = None
    kept: ImageFaces | None = None  # from the kept embedding

    def analyse(self, dep: Deployment) -> Outcome:
        if self.kept is not None:
            return self.kept
        try:
            [found] = dep.pipeline.process([load_image(fs_path(self.path))])
        except ImageError as exc:
            return exc
        picked = same_face([face.bbox for face in found.faces], self.bbox)
        return dataclasses.replace(found, faces=() if picked is None else (found.faces[picked],))


def _face_source(dep: Deployment, member: ClusterMember, kept: Any) -> _FaceSource:
    path = member.source_path
    if path and _same_bytes(path, member.image_sha256):
        return _FaceSource(path, member.bbox, member.unknown_face_id)
    if kept is None or kept.thumbnail is None:
        raise IdentityError(
            f"face {member.face_key}: its photo {path or '(no path)'} is gone or changed, and no "
            "embedding was kept: split it out of the cluster, or discard it"
        )
    vector = intact_vectors(dep.unknown_faces(), [kept.id]).get(kept.id)
    if vector is None:
        raise NotFound(f"face {member.face_key}: its kept embedding is gone (expired); split it out of the cluster")
    target = new_upload_folder(dep.settings) / f"{kept.id}.jpg"  # erased with the person, like uploaded photos
    target.write_bytes(kept.thumbnail)
    height, width = load_image(str(target)).rgb.shape[:2]
    quality = Quality(**{**kept.quality, "rejections": tuple(kept.quality.get("rejections", ()))})
    face = DetectedFace(
        (0.0, 0.0, float(width), float(height)),
        np.zeros((5, 2), np.float32),
        quality.det_score,
        quality,
        vector,
        np.zeros((0, 0, 3), np.uint8),
        "kept unknown face",
    )
    found = ImageFaces(str(target), file_digest(str(target)), width, height, (face,), "kept unknown face")
    return _FaceSource(str(target), member.bbox, member.unknown_face_id, found)


def _same_bytes(path: str, sha256: str) -> bool:
    try:
        return Path(fs_path(path)).is_file() and file_digest(path) == sha256
    except OSError:
        return False
