"""Idempotent POSTs: a request sent again with the same `Idempotency-Key` (by the same API key, to the same
route) within `api.idempotency_hours` gets the first answer back instead of acting twice.

Only a successful answer is kept: a request that failed releases its key, so a retry acts again. The same key
with another request body is refused (422), and while the first request still runs a duplicate gets 409.
Expired answers are purged lazily, by the next idempotent request; an erasure deletes the answers naming the
person (identity.services.curation.erasure).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from identity.app.core import App
from identity.errors import IdentityError, InvalidArgument
from identity.store.sql import idempotency as rows
from identity.store.sql.db import transaction
from identity.store.sql.errors import IntegrityError
from identity.store.sql.tables import naive_utc, utcnow

MAX_KEY = 255  # the column's length
ABANDONED_AFTER = timedelta(minutes=10)  # a request that has not answered by then died with its process


class InProgress(IdentityError):
    """The first request with this key is still running (HTTP 409)."""


@dataclass(frozen=True)
class Replay:
    """The first answer to this key: answer it again."""

    status_code: int
    body: dict[str, Any] | None


@dataclass(frozen=True)
class Started:
    """This request holds the key: `finish` it with its answer, or `abandon` it when it fails."""

    row_id: int


def request_digest(parts: Iterable[bytes]) -> str:
    """The sha256 a request is compared by: of its parts, each length-prefixed so no two splits collide."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def begin(app: App, key_id: str, route: str, idempotency_key: str, request_sha256: str) -> Replay | Started:
    """Hold `idempotency_key` for this request, or the first answer given to it."""
    if not 0 < len(idempotency_key) <= MAX_KEY or not idempotency_key.isprintable():
        raise InvalidArgument(f"Idempotency-Key: expected 1 to {MAX_KEY} printable characters")
    now = utcnow()
    with transaction(app.sessions) as session:
        rows.purge_expired(session, now)
    for _ in range(2):  # twice: once more after taking over an abandoned request
        try:
            with transaction(app.sessions) as session:
                expires = now + timedelta(hours=app.settings.api.idempotency_hours)
                return Started(rows.start(session, key_id, route, idempotency_key, request_sha256, expires))
        except IntegrityError:
            pass  # held: by a finished request (replay), a running one, or a dead one
        with transaction(app.sessions) as session:
            row = rows.answer_for(session, key_id, route, idempotency_key)
            if row is None:
                continue  # its request failed meanwhile and released the key
            if row.request_sha256 != request_sha256:
                raise InvalidArgument(
                    f"Idempotency-Key {idempotency_key!r} was sent with another request to {route}: "
                    "use a new key for a new request"
                )
            if row.status_code != rows.IN_PROGRESS:
                return Replay(row.status_code, row.body)
            if naive_utc(row.created_at) > naive_utc(now - ABANDONED_AFTER):
                raise InProgress(
                    f"the request with Idempotency-Key {idempotency_key!r} is still running: retry once it answered"
                )
            rows.forget(session, [row.id])
    raise InProgress(f"the request with Idempotency-Key {idempotency_key!r} is contended: retry it")


def finish(app: App, started: Started, status_code: int, body: dict[str, Any], person_id: uuid.UUID | None) -> None:
    """Keep the answer (naming `person_id`, erased with them) for the retries."""
    with transaction(app.sessions) as session:
        rows.complete(session, started.row_id, status_code, body, person_id)


def abandon(app: App, started: Started) -> None:
    """The request failed: release its key, so a retry acts again."""
    with transaction(app.sessions) as session:
        rows.forget(session, [started.row_id])
