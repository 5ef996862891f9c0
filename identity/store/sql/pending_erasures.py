"""Rows of pending_erasures: an erasure recorded before it touches any store, found again by keyed token.

Lookups go by token (identity.store.sql.erasure.erasure_token), so the row needs no id of the
person once complete, and "is X being erased?" is answerable from the external id alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from identity.errors import ErasurePending
from identity.store.sql.erasure import person_tokens
from identity.store.sql.tables import PendingErasure

RECORDED, COMPLETE = "recorded", "complete"


def record_pending(
    session: Session, subject_token: str, person_token: str, plan: dict[str, Any], actor: str
) -> PendingErasure:
    row = PendingErasure(subject_token=subject_token, person_token=person_token, plan=plan, step=RECORDED, actor=actor)
    session.add(row)
    session.flush()
    return row


def open_erasure(session: Session, ref: str) -> PendingErasure | None:
    """The unfinished erasure of the person `ref` names (external id, or uuid), if any."""
    try:
        parsed: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        parsed = None
    by_external_id, by_id = person_tokens(session, ref, parsed)
    match = or_(
        PendingErasure.subject_token == by_external_id, *([PendingErasure.person_token == by_id] if by_id else [])
    )
    return session.scalars(
        select(PendingErasure).where(PendingErasure.completed_at.is_(None), match).order_by(PendingErasure.id).limit(1)
    ).first()


def open_erasure_ids(session: Session) -> list[int]:
    """Every unfinished erasure, oldest first."""
    return list(
        session.scalars(
            select(PendingErasure.id).where(PendingErasure.completed_at.is_(None)).order_by(PendingErasure.id)
        )
    )


def count_open(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(PendingErasure).where(PendingErasure.completed_at.is_(None)))
        or 0
    )


def erasing_external_ids(session: Session, external_ids: Iterable[str]) -> list[str]:
    """Those of `external_ids` whose erasure is still pending (one cheap query when none is)."""
    if not count_open(session):
        return []
    tokens = {person_tokens(session, external_id, None)[0]: external_id for external_id in set(external_ids)}
    found = session.scalars(
        select(PendingErasure.subject_token).where(
            PendingErasure.completed_at.is_(None), PendingErasure.subject_token.in_(list(tokens))
        )
    )
    return sorted(tokens[token] for token in set(found))


def refuse_while_erasing(session: Session, external_ids: Iterable[str]) -> None:
    """A person whose erasure is pending is not enrolled or added again until it completes: the next step
    would erase their new photos, or `person delete` would finish the old erasure instead of the new person."""
    erasing = erasing_external_ids(session, external_ids)
    if erasing:
        raise ErasurePending(
            f"the erasure of {erasing[0]} is pending: run `identity person delete {erasing[0]}` "
            f"or `identity doctor --repair` to finish it first",
            external_ids=erasing,
        )


def set_step(session: Session, erasure_id: int, step: str, forget_plan: bool = False) -> None:
    row = session.get_one(PendingErasure, erasure_id)
    row.step = step
    if forget_plan:
        row.plan = None
    if step == COMPLETE:
        row.completed_at = datetime.now(UTC)
