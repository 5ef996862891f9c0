"""The review UI's sessions, kept in SQL: opened at sign-in, checked on every page, ended at sign-out.

The browser holds a random token; the database only its SHA-256 (a copy of the table opens
no session). Every check re-reads the row and the key it was opened with, so sign-out, key
revocation and key expiry end a session at once, on every server sharing the database.
A session lives at most `lifetime_s` and never beyond its key's expiry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from identity.app.core import App
from identity.services.access.keys import KeyRecord, Unauthorized, check_usable, record_of
from identity.store.sql.api_keys import key_with_id
from identity.store.sql.db import transaction
from identity.store.sql.tables import UiSession, naive_utc, utcnow
from identity.store.sql.ui_sessions import add_session, purge_ended, session_with_hash

SEEN_RESOLUTION_S = 60  # last_seen_at is kept to the minute: not a write per page


@dataclass(frozen=True)
class OpenSession:
    token: str  # the cookie's secret: never stored, never logged
    key: KeyRecord
    csrf: str


def open_session(app: App, key_id: str, lifetime_s: float) -> OpenSession:
    """A new session for a key that was just authenticated: a fresh token (the id rotates at every sign-in)."""
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(24), utcnow()
    with transaction(app.sessions) as session:
        row = key_with_id(session, key_id)
        if row is None:
            raise Unauthorized("the API key is not valid")
        check_usable(row, now)
        purge_ended(session, now)  # at sign-in, so the table holds open sessions only (and a few just ended)
        ends = now + timedelta(seconds=lifetime_s)
        if row.expires_at is not None and naive_utc(row.expires_at) < naive_utc(ends):
            ends = row.expires_at
        add_session(
            session,
            UiSession(
                token_hash=_hash(token), key_id=key_id, csrf=csrf, created_at=now, last_seen_at=now, expires_at=ends
            ),
        )
        return OpenSession(token, record_of(row), csrf)


def session_for(app: App, token: str) -> OpenSession:
    """The open session a cookie's token names; Unauthorized when it ended, expired, or its key did."""
    now = utcnow()
    with transaction(app.sessions) as session:
        row = session_with_hash(session, _hash(token))
        if row is None or row.revoked_at is not None or _passed(row.expires_at, now):
            raise Unauthorized("the session has ended: sign in again")
        key = key_with_id(session, row.key_id)
        if key is None:
            raise Unauthorized("the session's API key is no longer valid: sign in again")
        check_usable(key, now)
        if (naive_utc(now) - naive_utc(row.last_seen_at)).total_seconds() > SEEN_RESOLUTION_S:
            row.last_seen_at = now
        return OpenSession(token, record_of(key), row.csrf)


def end_session(app: App, token: str) -> None:
    """Sign-out: the row is marked revoked, so a copy of the cookie is refused from now on."""
    with transaction(app.sessions) as session:
        row = session_with_hash(session, _hash(token))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()


def _passed(moment: datetime, now: datetime) -> bool:
    return naive_utc(moment) <= naive_utc(now)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
