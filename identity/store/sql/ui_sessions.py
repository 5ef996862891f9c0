"""Rows of review UI sessions (identity.services.access.sessions decides what they mean)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update

from identity.store.sql.db import Session, rowcount
from identity.store.sql.tables import UiSession


def add_session(session: Session, row: UiSession) -> UiSession:
    session.add(row)
    session.flush()
    return row


def session_with_hash(session: Session, token_hash: str) -> UiSession | None:
    return session.scalars(select(UiSession).where(UiSession.token_hash == token_hash)).one_or_none()


def revoke_sessions_of_key(session: Session, key_id: str, when: datetime) -> int:
    """End every open session opened with the key; how many were open."""
    done = session.execute(
        update(UiSession).where(UiSession.key_id == key_id, UiSession.revoked_at.is_(None)).values(revoked_at=when)
    )
    return int(rowcount(done) or 0)


def purge_ended(session: Session, now: datetime) -> None:
    """Forget sessions that ended (expired or revoked): their cookies are refused alike without a row."""
    session.execute(delete(UiSession).where(or_(UiSession.expires_at <= now, UiSession.revoked_at.is_not(None))))
