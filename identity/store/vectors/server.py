"""QdrantServerIndex: a Qdrant server (or qdrant-client's local mode for ``:memory:``).

Each model has a collection ``faces_<model>`` and one of person templates,
``templates_<model>``. Deployments from before named ``faces_<model>_g<n>`` through an
alias ``faces_<model>``; where that alias exists its collection is used (and
``templates_<model>_g<n>`` beside it), so they keep working unmoved. Calls are retried on transient
connection errors; a server that stays unreachable raises StoreUnavailable naming it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from identity.config import Settings
from identity.errors import DimensionMismatch, StoreUnavailable
from identity.store.vectors.base import (
    FACES,
    TEMPLATES,
    PersonHit,
    PurgeResult,
    VectorHit,
    VectorPoint,
    as_matrix,
    collection_name,
    sibling_name,
)
from identity.store.vectors.common import (
    INT8_QUANTILE,
    OVERSAMPLING,
    PERSON_KEY,
    check_k,
    payload,
    person_of,
    point_matrix,
    to_hit,
)

MEMORY = ":memory:"
UPSERT_CHUNK = 512  # points per request: keeps JSON bodies to a few MB
TRANSIENT_STATUS = {429, 502, 503, 504}
# purge: vacuum any segment with a deleted point; the server refuses a minimum under 100 vectors.
PURGE_DELETED_THRESHOLD = 1e-9
PURGE_MIN_VECTORS = 100
PURGE_WAIT_S = 300.0
NOT_FORCED = (
    "the server's write-ahead log keeps the upserts (vectors and payload) until its 32 MB "
    "(wal_capacity_mb) segment files are rotated; its API cannot truncate it",
    "segments holding fewer than 100 vectors are not vacuumed (the server's minimum) until merged",
    "snapshots and backups taken before the erasure keep the points",
    "disk blocks freed by rewritten segments are not overwritten",
)
T = TypeVar("T")


class _Connection:
    """A client shared by a face collection and its templates; closed with the last user."""

    def __init__(self, client: QdrantClient, settings: Settings, owned: bool) -> None:
        self.client = client
        self.url = settings.qdrant_url or MEMORY
        self.retries = settings.qdrant_retries
        self.owned = owned  # an injected client belongs to the caller: never closed here
        self.users = 1
        # qdrant-client's local mode is not thread-safe (a server is): its calls go one at a time
        self._local = threading.Lock() if self.url == MEMORY else contextlib.nullcontext()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in range(self.retries + 1):
            try:
                with self._local:
                    return fn(*args, **kwargs)
            except ResponseHandlingException as exc:  # connection refused, timeout, DNS
                reason = str(getattr(exc, "source", exc)) or type(exc).__name__
            except UnexpectedResponse as exc:
                if exc.status_code in (401, 403):
                    raise StoreUnavailable(
                        f"Qdrant server at {self.url} rejected the API key (HTTP {exc.status_code}); "
                        "check IDENTITY_QDRANT_API_KEY"
                    ) from None
                if exc.status_code not in TRANSIENT_STATUS:
                    raise
                reason = f"HTTP {exc.status_code}"
            if attempt < self.retries:
                time.sleep(min(0.25 * 2**attempt, 4.0))
        raise StoreUnavailable(
            f"Qdrant server at {self.url} is unreachable after {self.retries + 1} tries ({reason}); "
            "check that it is running and IDENTITY_QDRANT_URL"
        )

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.owned:
            self.client.close()


class QdrantServerIndex:
    """A model's face collection (or its person templates) on a Qdrant server."""

    def __init__(
        self, conn: _Connection, settings: Settings, model_id: str, dim: int, collection: str, kind: str = FACES
    ) -> None:
        self._conn: _Connection | None = conn
        self._settings = settings
        self._model_id = model_id
        vectors = settings.vectors
        rescore = models.QuantizationSearchParams(ignore=vectors.exact, rescore=True, oversampling=OVERSAMPLING)
        params = models.SearchParams(hnsw_ef=vectors.search_ef, exact=vectors.exact, quantization=rescore)
        # Local mode always searches exactly and warns when given search params.
        self._params = None if settings.qdrant_url == MEMORY else params
        self.dim = dim
        self.kind = kind
        self.collection = collection

    @classmethod
    def open(
        cls,
        settings: Settings,
        model_id: str,
        dim: int,
        client: QdrantClient | None = None,
    ) -> QdrantServerIndex:
        """Ensure and open the model's face collection (the one an older deployment's alias names, if any).

        ``client``: an already-open client to use and leave open (tests share one ``:memory:`` store).
        """
        conn = _Connection(client or _connect(settings), settings, owned=client is None)
        try:
            name = collection_name(model_id)
            index = cls(conn, settings, model_id, dim, _alias_target(conn, name) or name)
            index.ensure()
            return index
        except BaseException:
            conn.release()
            raise

    def ensure(self) -> None:
        """Create the collection and its person_id index if missing (idempotent)."""
        conn = self._live
        if conn.call(conn.client.collection_exists, self.collection):
            info = conn.call(conn.client.get_collection, self.collection)
            size = getattr(info.config.params.vectors, "size", None)
            if size != self.dim:
                raise DimensionMismatch(f"collection {self.collection} holds {size}-d vectors, not {self.dim}-d")
        else:
            vectors = self._settings.vectors
            try:
                conn.call(
                    conn.client.create_collection,
                    self.collection,
                    vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
                    hnsw_config=models.HnswConfigDiff(m=vectors.hnsw_m, ef_construct=vectors.hnsw_ef_construct),
                    quantization_config=models.ScalarQuantization(
                        scalar=models.ScalarQuantizationConfig(
                            type=models.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True
                        )
                    ),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another worker created it first
                    raise
        # Always (idempotent): repairs a crash between creating the collection and its index.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode: "payload indexes have no effect"
            conn.call(
                conn.client.create_payload_index,
                self.collection,
                PERSON_KEY,
                models.PayloadSchemaType.KEYWORD,
                wait=True,
            )

    @property
    def _live(self) -> _Connection:
        if self._conn is None:
            raise StoreUnavailable(f"collection {self.collection} is closed")
        return self._conn

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        conn = self._live
        matrix = point_matrix(points, self.dim)
        for start in range(0, len(points), UPSERT_CHUNK):
            chunk = [
                models.PointStruct(id=str(p.face_id), vector=row.tolist(), payload=payload(p))
                for p, row in zip(
                    points[start : start + UPSERT_CHUNK], matrix[start : start + UPSERT_CHUNK], strict=True
                )
            ]
            conn.call(conn.client.upsert, self.collection, points=chunk, wait=True)

    def delete(self, face_ids: Sequence[uuid.UUID]) -> None:
        if face_ids:
            selector = models.PointIdsList(points=[str(f) for f in face_ids])
            self._live.call(self._live.client.delete, self.collection, points_selector=selector, wait=True)

    def delete_person(self, person_id: uuid.UUID) -> None:
        selector = models.FilterSelector(filter=_person_filter([person_id]))
        self._live.call(self._live.client.delete, self.collection, points_selector=selector, wait=True)

    def vectors(self, face_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        if not face_ids:
            return {}
        conn = self._live
        records = conn.call(
            conn.client.retrieve, self.collection, ids=[str(f) for f in face_ids], with_payload=False, with_vectors=True
        )
        return {uuid.UUID(str(r.id)): np.asarray(r.vector, dtype=np.float32) for r in records}

    def set_person(self, face_ids: Sequence[uuid.UUID], person_id: uuid.UUID) -> None:
        if not face_ids:
            return
        conn = self._live
        # Qdrant fails on an unknown id; the contract ignores them, so keep only known ones.
        known = [
            r.id
            for r in conn.call(
                conn.client.retrieve,
                self.collection,
                ids=[str(f) for f in face_ids],
                with_payload=False,
                with_vectors=False,
            )
        ]
        if known:
            conn.call(
                conn.client.set_payload, self.collection, payload={PERSON_KEY: str(person_id)}, points=known, wait=True
            )

    def search(self, vector: np.ndarray, k: int, person_ids: Sequence[uuid.UUID] | None = None) -> list[VectorHit]:
        check_k(k)
        query = as_matrix(vector, self.dim)[0]
        if person_ids is not None and not person_ids:
            return []
        conn = self._live
        response = conn.call(
            conn.client.query_points,
            self.collection,
            query=query.tolist(),
            limit=k,
            query_filter=_filter(person_ids),
            search_params=self._params,
            with_payload=[PERSON_KEY],
        )
        return [to_hit(p.id, p.payload, p.score) for p in response.points]

    def search_batch(self, vectors: np.ndarray, k: int) -> list[list[VectorHit]]:
        check_k(k)
        matrix = as_matrix(vectors, self.dim)
        requests = [
            models.QueryRequest(query=q.tolist(), limit=k, params=self._params, with_payload=[PERSON_KEY])
            for q in matrix
        ]
        conn = self._live
        responses = conn.call(conn.client.query_batch_points, self.collection, requests=requests)
        return [[to_hit(p.id, p.payload, p.score) for p in r.points] for r in responses]

    def search_persons(
        self,
        vector: np.ndarray,
        k: int,
        faces_per_person: int = 3,
        person_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[PersonHit]:
        check_k(k, faces_per_person)
        query = as_matrix(vector, self.dim)[0]
        if person_ids is not None and not person_ids:
            return []
        conn = self._live
        result = conn.call(
            conn.client.query_points_groups,
            self.collection,
            group_by=PERSON_KEY,
            query=query.tolist(),
            limit=k,
            group_size=faces_per_person,
            query_filter=_filter(person_ids),
            search_params=self._params,
            with_payload=[PERSON_KEY],
        )
        persons = []
        for group in result.groups:
            faces = tuple(to_hit(p.id, p.payload, p.score) for p in group.hits)
            persons.append(PersonHit(uuid.UUID(str(group.id)), faces[0].score, faces))
        return persons

    def count(self) -> int:
        return self._live.call(self._live.client.count, self.collection, exact=True).count

    def iter_ids(self, batch_size: int = 1000) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        conn, offset = self._live, None
        while True:
            records, offset = conn.call(
                conn.client.scroll,
                self.collection,
                limit=batch_size,
                offset=offset,
                with_payload=[PERSON_KEY],
                with_vectors=False,
            )
            for record in records:
                yield uuid.UUID(str(record.id)), person_of(record.payload)
            if offset is None:
                return

    def optimize(self) -> None:
        """Nothing to do: the server's optimizers index in the background."""

    def unindexed(self) -> int:
        """0: the server's optimizers index in the background, and it reports on that itself."""
        return 0

    def purge(self) -> PurgeResult:
        """Have the server vacuum deleted points out of the segment files, and wait for it.

        The API has no "vacuum now": the vacuum optimizer rewrites a segment once enough of
        it is deleted. So the thresholds are lowered to "any deleted point" (and at least
        100 vectors, the server's floor), the optimizers are waited for (status green), and
        the collection's own thresholds are put back, so that everyday updates do not
        rewrite segments. What the API cannot force is listed under "not_forced".
        """
        conn = self._live
        if conn.url == MEMORY:
            return PurgeResult("qdrant local mode", "in memory; no files hold the points")
        started = time.monotonic()
        before = conn.call(conn.client.get_collection, self.collection).config.optimizer_config
        self._set_vacuum(PURGE_DELETED_THRESHOLD, PURGE_MIN_VECTORS)
        try:
            vacuumed = self._wait_green(PURGE_WAIT_S)
        finally:
            self._set_vacuum(before.deleted_threshold, before.vacuum_min_vector_number)
        return PurgeResult(
            "qdrant",
            "vacuum optimizer with thresholds lowered",
            vacuum_finished=vacuumed,
            seconds=round(time.monotonic() - started, 3),
            not_forced=list(NOT_FORCED),
        )

    def _set_vacuum(self, deleted_threshold: float | None, min_vectors: int | None) -> None:
        conn = self._live
        diff = models.OptimizersConfigDiff(deleted_threshold=deleted_threshold, vacuum_min_vector_number=min_vectors)
        conn.call(conn.client.update_collection, self.collection, optimizers_config=diff)

    def _wait_green(self, timeout: float) -> bool:
        """True once the collection reports no optimization running or pending, False on timeout."""
        conn, deadline = self._live, time.monotonic() + timeout
        time.sleep(0.5)  # let the server plan the vacuum the new thresholds call for
        while time.monotonic() < deadline:
            if conn.call(conn.client.get_collection, self.collection).status == models.CollectionStatus.GREEN:
                return True
            time.sleep(1.0)
        return False

    def templates(self) -> QdrantServerIndex:
        return self.sibling(TEMPLATES)

    def sibling(self, kind: str) -> QdrantServerIndex:
        if self.kind != FACES:
            raise ValueError(f"{self.collection} is not a face collection")
        conn = self._live
        conn.users += 1  # the sibling shares this client (a :memory: store lives in it)
        try:
            index = QdrantServerIndex(
                conn, self._settings, self._model_id, self.dim, sibling_name(self.collection, kind), kind
            )
            index.ensure()
            return index
        except BaseException:
            conn.release()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.release()
            self._conn = None

    def __enter__(self) -> QdrantServerIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def server_connection(settings: Settings, client: QdrantClient | None = None) -> Iterator[_Connection]:
    """A connection for one block of calls outside a collection (the store's metadata), with the same retries."""
    conn = _Connection(client or _connect(settings), settings, owned=client is None)
    try:
        yield conn
    finally:
        conn.release()


def _connect(settings: Settings) -> QdrantClient:
    if settings.qdrant_url == MEMORY:
        return QdrantClient(location=MEMORY)
    # check_compatibility would make a request (and warn) before our retry logic runs.
    return QdrantClient(
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key,
        timeout=settings.qdrant_timeout,  # type: ignore[arg-type]  # httpx takes float seconds
        check_compatibility=False,
    )


def _alias_target(conn: _Connection, alias: str) -> str | None:
    aliases = conn.call(conn.client.get_aliases).aliases
    return next((a.collection_name for a in aliases if a.alias_name == alias), None)


def _filter(person_ids: Sequence[uuid.UUID] | None) -> models.Filter | None:
    return None if person_ids is None else _person_filter(person_ids)


def _person_filter(person_ids: Sequence[uuid.UUID]) -> models.Filter:
    match = models.MatchAny(any=[str(p) for p in person_ids])
    return models.Filter(must=[models.FieldCondition(key=PERSON_KEY, match=match)])
