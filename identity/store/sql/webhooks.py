"""Rows of completion webhooks, the delivery log (identity.services.queue.webhooks decides what they mean).

A delivery is `waiting` while its batch has jobs to do, `pending` once its payload is written (sent, and
retried, when next_attempt_at comes), then `delivered`, `failed` (out of attempts) or `dropped` (it named a
person since erased; its payload cleared).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, select, update

from identity.store.sql.db import Session, rowcount
from identity.store.sql.tables import Job, JobStatus, Person, WebhookDelivery

WAITING, PENDING, DELIVERED, FAILED, DROPPED = "waiting", "pending", "delivered", "failed", "dropped"
STATES = (WAITING, PENDING, DELIVERED, FAILED, DROPPED)


def add_waiting(session: Session, batch: str, url: str) -> None:
    session.add(WebhookDelivery(batch=batch, url=url, status=WAITING, attempts=0, person_ids=[]))
    session.flush()


def batches_done(session: Session) -> list[WebhookDelivery]:
    """Waiting deliveries whose batch has no job left to do (queued or running), locked."""
    open_jobs = exists().where(
        Job.batch == WebhookDelivery.batch, Job.status.in_((JobStatus.queued, JobStatus.running))
    )
    stmt = select(WebhookDelivery).where(WebhookDelivery.status == WAITING, ~open_jobs).order_by(WebhookDelivery.id)
    return list(session.scalars(stmt.with_for_update(skip_locked=True)))


def person_ids_of(session: Session, external_ids: Sequence[str]) -> list[str]:
    """The ids (as text) of the persons with these external ids (those that exist)."""
    if not external_ids:
        return []
    found = session.scalars(select(Person.id).where(Person.external_id.in_(set(external_ids))))
    return sorted(str(person_id) for person_id in found)


def make_pending(delivery: WebhookDelivery, payload: dict[str, Any], person_ids: list[str], now: datetime) -> None:
    delivery.status, delivery.payload, delivery.person_ids = PENDING, payload, person_ids
    delivery.next_attempt_at = now


def claim_due(session: Session, now: datetime, hold_until: datetime, limit: int) -> list[WebhookDelivery]:
    """Pending deliveries due by `now`, held until `hold_until` (so another sender skips them while this one
    sends); commit promptly after."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list(session.scalars(stmt))
    for delivery in due:
        delivery.next_attempt_at = hold_until
    session.flush()
    return due


def record_attempt(
    session: Session,
    delivery_id: int,
    status: str,
    http_status: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Log one attempt; a delivery dropped meanwhile (its person erased) stays dropped."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
        .values(
            status=status,
            attempts=WebhookDelivery.attempts + 1,
            last_status=http_status,
            last_error=error,
            next_attempt_at=next_attempt_at,
            delivered_at=now if status == DELIVERED else None,
            updated_at=now,
        )
    )


def drop_person_webhooks(session: Session, person_id: uuid.UUID) -> dict[str, int]:
    """Drop the deliveries not yet made whose payload names this person: status dropped, payload cleared."""
    wanted = str(person_id)
    undelivered = session.scalars(select(WebhookDelivery).where(WebhookDelivery.status == PENDING))
    ids = [d.id for d in undelivered if wanted in (d.person_ids or [])]
    if not ids:
        return {}
    dropped = update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
    dropped = dropped.values(status=DROPPED, payload=None, person_ids=[], next_attempt_at=None)
    return {"webhook_deliveries_dropped": rowcount(session.execute(dropped))}


def list_deliveries(session: Session, status: str | None, limit: int, offset: int) -> list[WebhookDelivery]:
    stmt = _matching(status).order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_deliveries(session: Session, status: str | None) -> int:
    return session.scalar(select(func.count()).select_from(_matching(status).subquery())) or 0


def _matching(status: str | None) -> Select[WebhookDelivery]:
    stmt = select(WebhookDelivery)
    return stmt if status is None else stmt.where(WebhookDelivery.status == status)
