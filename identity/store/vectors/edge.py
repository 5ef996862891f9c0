"""EdgeIndex: the embedded engine, Qdrant Edge shards under the data directory.

Layout under ``settings.edge_dir``: one shard directory per collection, ``faces_<model>/``
and ``templates_<model>/``. Data dirs from before held ``faces_<model>_g<n>/`` shards and a
pointer file ``faces_<model>.active`` naming the live one; the first open renames the live
shards to the plain names, removes any other generation and then the pointer (see
_adopt_generations).

One thread at a time uses a shard: each public method holds the index's lock (an RLock), so
the server's request threads and its background worker share the App's collections without a
wrapper (see _one_at_a_time). One process at a time may hold a shard. The engine's own WAL lock only fails with an
opaque "Can't init WAL: WouldBlock", so we take an exclusive ``flock`` on ``.lock`` in
the shard directory first and say who holds it. The kernel drops it if the holder dies.

Qdrant Edge has no background optimizer: an upsert that leaves more vectors outside a search graph
than an exact scan should cover builds their graph there and then (_index_if_due), and merges are
capped by segment size, so a bulk enrollment ends with its graphs built (docs/storage.md).

Deleting a point only marks it: its vector, int8 copy and payload stay in the segment
files, and the WAL (32 MB files, preallocated, holding every update as CBOR) keeps the
upsert until the log wraps; no call of the engine truncates it. ``purge`` therefore
rebuilds the shard from its live points (see there).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchAny,
    Memory,
    PayloadSchemaType,
    Point,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    ScoredPoint,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from identity import process
from identity.config import Settings, VectorSettings
from identity.errors import DimensionMismatch, IdentityError, StoreDamaged, StoreLocked, StoreUnavailable
from identity.fsutil import fsync_dir
from identity.store.vectors.base import (
    FACES,
    TEMPLATES,
    PersonHit,
    PurgeResult,
    VectorHit,
    VectorPoint,
    as_matrix,
    collection_name,
)
from identity.store.vectors.common import (
    INT8_QUANTILE,
    OVERSAMPLING,
    PERSON_KEY,
    as_uuid,
    check_k,
    group_hits,
    payload,
    person_of,
    point_matrix,
    to_hit,
)
from identity.store.vectors.space import SET_ASIDE, ensure_space

# Segments whose vectors take less than this are scanned, not graph-searched; a segment that grows past it
# is given its graph by the upsert that takes it there (_index_if_due), so no larger one is scanned for long.
FULL_SCAN_THRESHOLD_KB = 10_000
# Merging indexed segments rebuilds their graph, so what a merge may make is capped: the graphs built during
# a 1M-face enrollment then come to a few times its points, not their square. Searches go by the templates'
# graphs (fewer, larger segments answer faster); faces are searched by person, through the payload index,
# so their segments stay small (each face's graph is built about twice).
TEMPLATE_SEGMENT_KB = 262_144
FACE_SEGMENT_KB = 4 * FULL_SCAN_THRESHOLD_KB
SEGMENTS = 2  # merges start above this many segments
LOCK_FILE = ".lock"
CONFIG_FILE = "edge_config.json"
REBUILD_SUFFIX = ".erasing"  # a shard being rebuilt by purge, or the old one just swapped out
COPY_BATCH = 1000

P = ParamSpec("P")
R = TypeVar("R")


def _one_at_a_time(method: Callable[Concatenate[EdgeIndex, P], R]) -> Callable[Concatenate[EdgeIndex, P], R]:
    """Run a method under the index's lock. The shard is not to be used by two threads at once, and the
    lock lives here, at the engine that needs it, so every holder of the collection in the process is
    serialized (a Qdrant server orders concurrent calls itself). A search's vector work takes milliseconds,
    its inference tens, so the wait is short; uncontended, the lock costs well under a microsecond."""

    @functools.wraps(method)
    def locked(index: EdgeIndex, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with index._mutex:
            return method(index, *args, **kwargs)

    return locked


class EdgeIndex:
    """One Qdrant Edge shard holding a model's face vectors (or its person templates)."""

    def __init__(
        self,
        shard: EdgeShard,
        lock: IO[str],
        settings: Settings,
        model_id: str,
        dim: int,
        kind: str = FACES,
    ) -> None:
        self._shard: EdgeShard | None = shard
        self._lock = lock  # the shard directory's flock: one process
        self._mutex = threading.RLock()  # one thread of it at a time (_one_at_a_time)
        self._settings = settings
        self._model_id = model_id
        vectors = settings.vectors
        rescore = QuantizationSearchParams(ignore=vectors.exact, rescore=True, oversampling=OVERSAMPLING)
        self._params = SearchParams(hnsw_ef=vectors.search_ef, exact=vectors.exact, quantization=rescore)
        self.dim = dim
        self.kind = kind
        self._templates = kind == TEMPLATES
        self.collection = collection_name(model_id, kind)
        self.path = settings.edge_dir / self.collection

    @classmethod
    def open(cls, settings: Settings, model_id: str, dim: int, kind: str = FACES) -> EdgeIndex:
        """Open the model's collection of this kind, creating it if missing (NoSpace when the disk is too full)."""
        # Before the engine maps a page the disk cannot back, which would be SIGBUS (store/vectors/space.py).
        ensure_space(settings.edge_dir, settings.vectors.preallocate)
        _adopt_generations(settings.edge_dir, model_id)
        path = settings.edge_dir / collection_name(model_id, kind)
        lock = _acquire(path, settings)
        try:
            _drop_leftover_rebuild(path)
            shard = _open_shard(path, dim, settings.vectors, kind)
        except BaseException:
            lock.close()
            raise
        return cls(shard, lock, settings, model_id, dim, kind)

    @property
    def _engine(self) -> EdgeShard:
        if self._shard is None:
            raise StoreUnavailable(f"vector store {self.path} is closed")
        return _Guarded(self._shard, self.path)  # type: ignore[return-value]

    @_one_at_a_time
    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        matrix = point_matrix(points, self.dim)
        # Lists, not arrays: the binding converts a list ~1.5x faster.
        batch = [
            Point(id=p.face_id, vector=row.tolist(), payload=payload(p)) for p, row in zip(points, matrix, strict=True)
        ]
        self._engine.update(UpdateOperation.upsert_points(batch))
        self._engine.flush()  # the WAL survives a crashed process; flush makes segments durable too
        _index_if_due(self._engine, self.dim, self._settings.vectors)

    @_one_at_a_time
    def delete(self, face_ids: Sequence[uuid.UUID]) -> None:
        if face_ids:
            self._engine.update(UpdateOperation.delete_points(list(face_ids)))
            self._engine.flush()

    @_one_at_a_time
    def delete_person(self, person_id: uuid.UUID) -> None:
        self._engine.update(UpdateOperation.delete_points_by_filter(Filter(must=[_persons([person_id])])))
        self._engine.flush()

    @_one_at_a_time
    def search(self, vector: np.ndarray, k: int, person_ids: Sequence[uuid.UUID] | None = None) -> list[VectorHit]:
        check_k(k)
        query = as_matrix(vector, self.dim)[0]
        if person_ids is not None and not person_ids:
            return []
        return self._query(query, k, _filter(person_ids))

    @_one_at_a_time
    def search_batch(self, vectors: np.ndarray, k: int) -> list[list[VectorHit]]:
        check_k(k)
        matrix = as_matrix(vectors, self.dim)
        results = self._engine.query_batch(QueryBatchRequest([self._request(q, k, None) for q in matrix]))
        return [[self._hit(p) for p in points] for points in results]

    @_one_at_a_time
    def search_persons(
        self,
        vector: np.ndarray,
        k: int,
        faces_per_person: int = 3,
        person_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[PersonHit]:
        # The Python binding has no query_groups (Rust only), so: each round excludes the
        # persons already found, so one person's many faces never hide the next person.
        check_k(k, faces_per_person)
        query = as_matrix(vector, self.dim)[0]
        if person_ids is not None and not person_ids:
            return []
        limit = 2 * k * faces_per_person
        hits: list[VectorHit] = []
        seen: set[uuid.UUID] = set()
        complete: set[uuid.UUID] = set()
        while len(seen) < k:
            found = self._query(query, limit, _filter(person_ids, exclude=seen))
            hits += found
            new = {hit.person_id for hit in found}
            seen |= new
            if len(found) < limit:
                complete = new  # an exhaustive round saw every face of its persons
                break
        persons = group_hits(hits, k, faces_per_person)
        short = [p for p in persons if len(p.faces) < faces_per_person and p.person_id not in complete]
        if not short:
            return persons
        # A person found near a round's cut-off may have more good faces: fetch them per person.
        requests = [self._request(query, faces_per_person, _filter([p.person_id])) for p in short]
        fills = self._engine.query_batch(QueryBatchRequest(requests))
        faces = {p.person_id: [self._hit(x) for x in f] for p, f in zip(short, fills, strict=True)}
        return [
            PersonHit(p.person_id, faces[p.person_id][0].score, tuple(faces[p.person_id]))
            if faces.get(p.person_id)
            else p
            for p in persons
        ]

    @_one_at_a_time
    def vectors(self, face_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        if not face_ids:
            return {}
        records = self._engine.retrieve(list(face_ids), with_payload=False, with_vector=True)
        return {uuid.UUID(str(r.id)): np.asarray(r.vector, dtype=np.float32) for r in records}

    @_one_at_a_time
    def set_person(self, face_ids: Sequence[uuid.UUID], person_id: uuid.UUID) -> None:
        # The engine fails on an unknown id; the contract ignores them, so keep only known ones.
        known = [r.id for r in self._engine.retrieve(list(face_ids), with_payload=False, with_vector=False)]
        if known:
            self._engine.update(UpdateOperation.set_payload(known, {PERSON_KEY: str(person_id)}))
            self._engine.flush()

    @_one_at_a_time
    def count(self) -> int:
        return self._engine.count(CountRequest(exact=True))

    def iter_ids(self, batch_size: int = 1000) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        offset = None
        while True:
            with self._mutex:  # a page at a time: the caller's loop between pages holds nothing
                records, offset = self._engine.scroll(
                    ScrollRequest(offset=offset, limit=batch_size, with_payload=True, with_vector=False)
                )
            for record in records:
                yield uuid.UUID(str(record.id)), person_of(record.payload)
            if offset is None:
                return

    @_one_at_a_time
    def optimize(self) -> None:
        self._engine.optimize()

    @_one_at_a_time
    def unindexed(self) -> int:
        return _unindexed(self._engine)

    @_one_at_a_time
    def purge(self) -> PurgeResult:
        """Rebuild the shard from its live points, so deleted points leave every file, WAL included.

        The live points are copied into a fresh shard beside this one (``<name>.erasing``),
        which is indexed, flushed and closed; the two directories are then swapped in one
        step (renameat2 RENAME_EXCHANGE) and the old one is removed. A crash before the
        swap leaves the old shard whole, after it the new one; the leftover directory is
        removed on the next open. Costs a copy and an index build of the whole shard.
        """
        started = time.monotonic()
        engine = self._engine
        engine.flush()
        fresh = _rebuild_path(self.path)
        shutil.rmtree(fresh, ignore_errors=True)
        fresh_lock = _acquire(fresh, self._settings)  # held across the swap: the new shard is never unlocked
        try:
            kept = _copy_live(engine, fresh, self.dim, self._settings.vectors, self.kind)
        except BaseException:
            fresh_lock.close()
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        self._shard = None
        engine.close()
        try:
            _exchange(self.path, fresh)
        except BaseException:
            fresh_lock.close()
            shutil.rmtree(fresh, ignore_errors=True)
            self._shard = _open_shard(self.path, self.dim, self._settings.vectors, self.kind)
            raise
        old_lock, self._lock = self._lock, fresh_lock
        shutil.rmtree(fresh)  # now the old shard, with the deleted points' bytes
        old_lock.close()
        fsync_dir(self.path.parent)
        self._shard = _open_shard(self.path, self.dim, self._settings.vectors, self.kind)
        return PurgeResult(
            "qdrant-edge",
            "shard rebuilt from its live points",
            points_kept=kept,
            seconds=round(time.monotonic() - started, 3),
        )

    @_one_at_a_time
    def set_aside(self) -> Path:
        """Move this shard aside (its files unreadable) and open an empty one in its place; returns where it went.

        `identity doctor --repair` then finds every indexed face's vector missing and enrolls it again
        from its photo, and removes the old directory when done (remove_set_aside).
        """
        shard, self._shard = self._shard, None
        if shard is not None:
            try:
                shard.close()
            except Exception:  # noqa: BLE001 - a damaged shard may fail to flush; it is being replaced
                pass
        aside = _aside_path(self.path)
        os.rename(self.path, aside)
        fresh_lock = _acquire(self.path, self._settings)
        self._lock.close()
        self._lock = fresh_lock
        fsync_dir(self.path.parent)
        self._shard = _open_shard(self.path, self.dim, self._settings.vectors, self.kind)
        return aside

    def templates(self) -> EdgeIndex:
        return self.sibling(TEMPLATES)

    def sibling(self, kind: str) -> EdgeIndex:
        if self.kind != FACES:
            raise ValueError(f"{self.collection} is not a face collection")
        return EdgeIndex.open(self._settings, self._model_id, self.dim, kind)

    @_one_at_a_time
    def close(self) -> None:
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        try:
            shard.flush()
            shard.close()
        finally:
            self._lock.close()  # closing the descriptor drops the flock

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, query: np.ndarray, limit: int, flt: Filter | None) -> QueryRequest:
        return QueryRequest(
            limit=limit,
            query=Query.Nearest(query.tolist()),
            filter=flt,
            # A template's id is its person's: reading its payload (~100 per search) would only cost time.
            with_payload=not self._templates,
            params=self._params,
        )

    def _query(self, query: np.ndarray, limit: int, flt: Filter | None) -> list[VectorHit]:
        points = self._engine.query(self._request(query, limit, flt))
        return [self._hit(p) for p in points]

    def _hit(self, point: ScoredPoint) -> VectorHit:
        if self._templates:  # a template's id is its person's (read without payload)
            person_id = as_uuid(point.id)
            return VectorHit(person_id, person_id, float(point.score))
        return to_hit(point.id, point.payload, point.score)


class _Guarded:
    """The shard, with the engine's bare exceptions (a missing or truncated file, an offset out of
    bounds) raised as StoreDamaged naming the shard and the repair, instead of an internal error."""

    def __init__(self, shard: EdgeShard, path: Path) -> None:
        self._shard = shard
        self._path = path

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._shard, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except IdentityError:
                raise
            except Exception as exc:  # the engine raises bare Exception with a message
                raise damaged(self._path, exc) from None

        return call


def damaged(path: Path, exc: BaseException) -> StoreDamaged:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StoreDamaged(
        f"vector store {path} is damaged ({reason}): run `identity doctor --repair`, which sets it aside and "
        "rebuilds it from the database and the photos",
        path=str(path),
        reason=reason,
    )


def _filter(person_ids: Sequence[uuid.UUID] | None, exclude: set[uuid.UUID] | None = None) -> Filter | None:
    must: list[Any] | None = [_persons(person_ids)] if person_ids is not None else None
    must_not: list[Any] | None = [_persons(exclude)] if exclude else None
    return Filter(must=must, must_not=must_not) if must or must_not else None


def _persons(person_ids: Sequence[uuid.UUID] | set[uuid.UUID]) -> FieldCondition:
    return FieldCondition(key=PERSON_KEY, match=MatchAny(any=[str(p) for p in person_ids]))


def _adopt_generations(root: Path, model_id: str) -> None:
    """Give a data dir from before its plain layout: the live generation's shards (faces and templates,
    named by the model's pointer file) take the plain names; other generations go, since no erasure
    reaches them any more; the pointer goes last, so a crash part-way is finished by the next open."""
    alias = collection_name(model_id)
    pointer = root / f"{alias}.active"
    if not pointer.exists():
        return
    with _directory_lock(root):
        if not pointer.exists():  # another process adopted them first
            return
        live = pointer.read_text().strip()
        match = re.fullmatch(re.escape(alias) + r"_g(\d+)", live)
        if not match:
            raise StoreUnavailable(f"{pointer} is corrupt ({live!r}); it should name a shard such as {alias}_g1")
        for kind in (FACES, TEMPLATES):
            old, new = (
                root / f"{collection_name(model_id, kind)}_g{match.group(1)}",
                root / collection_name(model_id, kind),
            )
            if old.exists() and not new.exists():
                os.rename(old, new)
            generations = re.compile(re.escape(collection_name(model_id, kind)) + r"_g\d+(\..*)?")
            for stale in [d for d in root.iterdir() if generations.fullmatch(d.name)]:
                shutil.rmtree(stale)
        fsync_dir(root)
        pointer.unlink()
        fsync_dir(root)


@contextmanager
def _directory_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on the store directory itself, for layout changes."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".layout.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _acquire(path: Path, settings: Settings) -> IO[str]:
    """An exclusive lock on the shard directory, or StoreLocked naming the holder and what to do."""
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _holder(handle.read())
        handle.close()
        raise _locked(path, holder, settings) from None
    handle.truncate(0)
    stamp = {
        "pid": os.getpid(),
        "command": process.command(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    handle.write(json.dumps(stamp))
    handle.flush()
    return handle


def _holder(text: str) -> dict[str, Any]:
    """The lock file's stamp; older versions wrote the pid alone."""
    text = text.strip()
    try:
        stamp = json.loads(text) if text else {}
    except json.JSONDecodeError:
        stamp = {}
    if isinstance(stamp, int):
        stamp = {"pid": stamp}
    return stamp if isinstance(stamp, dict) else {}


def _locked(path: Path, holder: dict[str, Any], settings: Settings) -> StoreLocked:
    who = f"`{holder['command']}`" if holder.get("command") else "another process"
    facts = [f"pid {holder.get('pid', 'unknown')}"]
    if holder.get("host") and holder["host"] != socket.gethostname():
        facts.append(f"on {holder['host']}")
    if holder.get("started"):
        facts.append(f"since {holder['started']}")
    if settings.sql_url.startswith("postgresql"):
        # With a shared database the tempting fix (another data directory) would split the vectors.
        advice = (
            "the embedded vector store takes one process at a time: stop it to run this one; for several "
            "workers use a Qdrant server (IDENTITY_QDRANT_URL), as another data directory would split "
            "the deployment's vectors"
        )
    else:
        advice = "the embedded vector store takes one process at a time: wait for it to finish, or stop it"
    return StoreLocked(
        f"vector store {path} is held by {who} ({', '.join(facts)}); {advice}",
        path=str(path),
        holder_pid=holder.get("pid"),
        holder_command=holder.get("command"),
        holder_host=holder.get("host"),
        holder_started=holder.get("started"),
    )


def set_aside_shard(settings: Settings, path: Path) -> Path:
    """Move a shard the engine cannot open aside (held under its lock while it moves); returns where it went.
    The next open creates an empty one in its place (see EdgeIndex.set_aside)."""
    lock = _acquire(path, settings)
    try:
        aside = _aside_path(path)
        os.rename(path, aside)
        fsync_dir(path.parent)
    finally:
        lock.close()
    return aside


def _aside_path(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return path.with_name(f"{path.name}{SET_ASIDE}{stamp}")


def remove_set_aside(root: Path) -> list[Path]:
    """Remove every shard set aside as damaged under the store directory; returns what was removed."""
    removed = sorted(path for path in root.glob(f"*{SET_ASIDE}*") if path.is_dir()) if root.is_dir() else []
    for path in removed:
        shutil.rmtree(path)
    if removed:
        fsync_dir(root)
    return removed


def _rebuild_path(path: Path) -> Path:
    return path.with_name(path.name + REBUILD_SUFFIX)


def _parked_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _drop_leftover_rebuild(path: Path) -> None:
    """Remove what a purge stopped by a crash left beside the shard (a half-built or the old shard)."""
    leftover = _rebuild_path(path)
    if leftover.exists() and not (path / CONFIG_FILE).exists():  # only a non-atomic swap leaves this
        raise StoreUnavailable(
            f"vector store {path} is incomplete and {leftover} holds a rebuilt shard (an erasure stopped "
            f"mid-swap): remove {path} and rename {leftover} to it"
        )
    for stale in (leftover, _parked_path(leftover)):
        shutil.rmtree(stale, ignore_errors=True)


def _copy_live(source: EdgeShard, target: Path, dim: int, params: VectorSettings, kind: str) -> int:
    """Copy every live point of `source` into a new shard at `target`, indexed and flushed; returns the count."""
    shard = EdgeShard.create(str(target), _config(dim, params, kind))
    try:
        shard.update(UpdateOperation.create_field_index(PERSON_KEY, PayloadSchemaType.Keyword))
        kept, offset = 0, None
        while True:
            records, offset = source.scroll(
                ScrollRequest(offset=offset, limit=COPY_BATCH, with_payload=True, with_vector=True)
            )
            if records:
                shard.update(
                    UpdateOperation.upsert_points(
                        # with_vector=True: every record carries its vector, though the type allows None
                        [Point(id=r.id, vector=r.vector, payload=r.payload) for r in records]  # type: ignore[arg-type]
                    )
                )
                kept += len(records)
                _index_if_due(shard, dim, params)
            if offset is None:
                break
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return kept


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step where the kernel can (Linux renameat2), else by three renames."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")
    parked = _parked_path(b)
    os.rename(a, parked)  # a crash until the next rename leaves `a` missing: open refuses, naming both
    os.rename(b, a)
    os.rename(parked, b)


def _unindexed(shard: EdgeShard) -> int:
    info = shard.info()
    return max(0, info.points_count - info.indexed_vectors_count)


def _index_if_due(shard: EdgeShard, dim: int, params: VectorSettings) -> None:
    """Build the search graph of what upserts wrote once it is more than an exact scan should cover: a bulk
    enrollment (or a purge's copy) leaves at most that much to its final optimize, and no search scans more."""
    if _unindexed(shard) > exact_scan_points(dim, params):
        shard.optimize()


def exact_scan_points(dim: int, params: VectorSettings) -> int:
    """How many vectors of this size a segment holds before its graph is built: FULL_SCAN_THRESHOLD_KB of
    them, or fewer where vectors.max_exact_scan (what search and doctor accept) says so."""
    return min(FULL_SCAN_THRESHOLD_KB * 1024 // (4 * dim), params.max_exact_scan)


def _config(dim: int, params: VectorSettings, kind: str) -> EdgeConfig:
    return EdgeConfig(
        vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
        hnsw_config=HnswIndexConfig(
            m=params.hnsw_m, ef_construct=params.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        ),
        optimizers=EdgeOptimizersConfig(
            indexing_threshold=max(1, exact_scan_points(dim, params) * 4 * dim // 1024),
            max_segment_size=TEMPLATE_SEGMENT_KB if kind == TEMPLATES else FACE_SEGMENT_KB,
            default_segment_number=SEGMENTS,
        ),
        quantization_config=ScalarQuantizationConfig(
            type=ScalarType.Int8, quantile=INT8_QUANTILE, memory=Memory.Pinned
        ),
    )


def _open_shard(path: Path, dim: int, params: VectorSettings, kind: str) -> EdgeShard:
    config = _config(dim, params, kind)
    try:
        if (path / CONFIG_FILE).exists():
            shard = EdgeShard.load(str(path), config)  # also applies changed HNSW settings
        else:
            shard = EdgeShard.create(str(path), config)
        if PERSON_KEY not in shard.info().payload_schema:
            shard.update(UpdateOperation.create_field_index(PERSON_KEY, PayloadSchemaType.Keyword))
    except Exception as exc:  # the engine raises bare Exception with a message
        if "vector size" in str(exc):
            raise DimensionMismatch(f"vector store {path} holds vectors of another size than {dim}") from None
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreDamaged(
            f"cannot open vector store {path} ({reason}): if it is damaged, run `identity doctor --repair`, which "
            "sets it aside and rebuilds it from the database and the photos",
            path=str(path),
            reason=reason,
            unopenable=True,
        ) from None
    return shard
