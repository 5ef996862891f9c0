"""Rows of API keys (identity.services.access.keys decides what they mean)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from identity.store.sql.db import Session
from identity.store.sql.tables import ApiKey


def add_key(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def key_named(session: Session, name: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()


def key_with_id(session: Session, key_id: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()


def all_keys(session: Session, limit: int | None = None, offset: int = 0) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(limit).offset(offset)))


def count_keys(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey)) or 0


def mark_used(session: Session, key: ApiKey, when: datetime) -> None:
    key.last_used_at = when
