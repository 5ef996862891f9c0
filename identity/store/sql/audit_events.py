"""Audit events: what was done to whom, appended by the services and looked up to answer "already done?"."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session

from identity.store.sql.tables import AuditEvent


def record_audit_event(
    session: Session,
    actor: str,
    action: str,
    *,
    person_id: uuid.UUID | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append an event; returns its id (flushed, so a later step of the same transaction can amend it)."""
    event = AuditEvent(actor=actor, action=action, person_id=person_id, subject=subject, details=details or {})
    session.add(event)
    session.flush()
    return event.id


def add_audit_details(session: Session, event_id: int, details: dict[str, Any]) -> None:
    """Merge `details` into an event's own, e.g. what a step after its transaction did."""
    event = session.get_one(AuditEvent, event_id)
    event.details = {**event.details, **details}  # a new dict, so the JSON column sees the change


def latest_audit_event(
    session: Session,
    action: str,
    subjects: Sequence[str],
    person_id: uuid.UUID | None = None,
    mentioning: str | None = None,
) -> AuditEvent | None:
    """The newest `action` event whose subject is one of `subjects`, or that is about `person_id`, or whose
    details mention `mentioning` (the last two only when given)."""
    found = [AuditEvent.subject == subject for subject in subjects]
    if mentioning is not None:
        found.append(cast(AuditEvent.details, String).contains(mentioning))
    if person_id is not None:
        found.append(AuditEvent.person_id == person_id)
    return session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == action, or_(*found))
        .order_by(AuditEvent.created_at.desc())
        .limit(1)
    ).first()
