"""Rows of idempotent answers (identity.services.access.idempotency decides what they mean).

A row is written when a request with an `Idempotency-Key` starts (status_code 0: in progress), so a
concurrent duplicate hits the unique key; it is completed with the answer, or deleted if the request failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from identity.store.sql.db import Session, rowcount
from identity.store.sql.tables import IdempotentAnswer

IN_PROGRESS = 0  # the status_code of a request still running


def answer_for(session: Session, key_id: str, route: str, idempotency_key: str) -> IdempotentAnswer | None:
    return session.scalars(
        select(IdempotentAnswer).where(
            IdempotentAnswer.key_id == key_id,
            IdempotentAnswer.route == route,
            IdempotentAnswer.idempotency_key == idempotency_key,
        )
    ).one_or_none()


def start(
    session: Session, key_id: str, route: str, idempotency_key: str, request_sha256: str, expires_at: datetime
) -> int:
    """Record a request as in progress; its row id. IntegrityError (at the flush) when another request holds
    the key: call it in a transaction of its own."""
    row = IdempotentAnswer(
        key_id=key_id,
        route=route,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        status_code=IN_PROGRESS,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row.id


def complete(
    session: Session, row_id: int, status_code: int, body: dict[str, Any] | None, person_id: uuid.UUID | None
) -> None:
    session.execute(
        update(IdempotentAnswer)
        .where(IdempotentAnswer.id == row_id)
        .values(status_code=status_code, body=body, person_id=person_id)
    )


def forget(session: Session, row_ids: Iterable[int]) -> int:
    ids = list(row_ids)
    if not ids:
        return 0
    return rowcount(session.execute(delete(IdempotentAnswer).where(IdempotentAnswer.id.in_(ids))))


def purge_expired(session: Session, now: datetime) -> int:
    return rowcount(session.execute(delete(IdempotentAnswer).where(IdempotentAnswer.expires_at < now)))


def forget_person_answers(session: Session, person_id: uuid.UUID, external_id: str) -> dict[str, int]:
    """Delete the answers naming this person: linked to them (the FK would cascade, but an erasure says what it
    removed), or naming their id or external id anywhere (a queued enrollment's, made before they existed)."""
    linked = select(IdempotentAnswer.id).where(IdempotentAnswer.person_id == person_id)
    ids = set(session.scalars(linked))
    names = {str(person_id), external_id}
    unlinked = session.scalars(select(IdempotentAnswer).where(IdempotentAnswer.person_id.is_(None)))
    ids |= {answer.id for answer in unlinked if _names(answer.body, names)}
    removed = forget(session, ids)
    return {"idempotent_answers": removed} if removed else {}


def _names(value: Any, names: set[str]) -> bool:
    if isinstance(value, str):
        return value in names
    if isinstance(value, dict):
        return any(_names(v, names) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, names) for v in value)
    return False
