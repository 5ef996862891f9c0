"""API keys with roles: `identity keys create|list|revoke`, and who a request's key belongs to.

A key reads `idk_<key id>_<secret>`: the key id finds its row, the secret is checked
against a salted HMAC-SHA256 of it (the secret is 256 random bits, so a slow hash adds
nothing); the key itself is printed once, at creation, and never stored. The key's name
is the actor in the search log and in audit events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.errors import IdentityError, InvalidArgument, NotFound
from identity.serialize import json_field
from identity.services.paging import Page, decode_cursor, page_of
from identity.store.sql.api_keys import add_key, all_keys, count_keys, key_named, key_with_id, mark_used
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import transaction
from identity.store.sql.tables import ApiKey, naive_utc, utcnow
from identity.store.sql.ui_sessions import revoke_sessions_of_key

PREFIX = "idk"
USE_RESOLUTION_S = 60  # last_used_at is kept to the minute
EXPIRY_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
EXPIRY_FORMAT = "Nd, Nh or Nm (days, hours, minutes from now) or an ISO date/time (UTC unless it names a zone)"


class Permission(StrEnum):  # a route names the permission it needs
    search = "search"
    enroll = "enroll"
    read = "read"
    jobs = "jobs"
    admin = "admin"


SEARCH, ENROLL, READ, JOBS, ADMIN = Permission


class Role(StrEnum):  # a key's role
    search = "search"
    enroll = "enroll"
    audit = "audit"
    admin = "admin"


# What each role may do.
ROLES: dict[Role, frozenset[Permission]] = {
    Role.search: frozenset({SEARCH}),
    Role.enroll: frozenset({ENROLL, JOBS}),
    Role.audit: frozenset({READ, JOBS}),
    Role.admin: frozenset(Permission),
}


class Unauthorized(IdentityError):
    """No key, a malformed or unknown one, or a revoked one (HTTP 401)."""


class Forbidden(IdentityError):
    """A valid key whose role does not allow the request (HTTP 403)."""


@dataclass(frozen=True)
class KeyRecord:
    name: str
    role: Role
    key_id: str
    created_at: str
    created_by: str
    revoked_at: str | None
    last_used_at: str | None
    expires_at: str | None  # None: never expires

    @property
    def permissions(self) -> frozenset[str]:
        return ROLES.get(self.role, frozenset())

    def allows(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class CreatedKey:
    record: KeyRecord = field(metadata=json_field(flatten=True))
    key: str  # shown once


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """`--expires-in`: a duration from now (90d, 12h, 30m) or an ISO date/time; the moment, in UTC."""
    now = now or utcnow()
    value = text.strip()
    found = re.fullmatch(r"(\d{1,6})([dhm])", value)
    if found:
        moment = now + timedelta(**{EXPIRY_UNITS[found[2]]: int(found[1])})
    else:
        try:
            parsed = datetime.fromisoformat(value) if "T" in value or " " in value else None
            moment = parsed or datetime.combine(date.fromisoformat(value), datetime.min.time())
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidArgument(f"expiry {text!r}: expected {EXPIRY_FORMAT}") from None
    if moment <= now:
        raise InvalidArgument(f"expiry {text!r} is not in the future")
    return moment


def create_key(
    app: App, name: str, role: str, actor: str | None = None, expires_at: datetime | None = None
) -> CreatedKey:
    """A new key of `role`, valid until `expires_at` (parse_expiry) or until revoked."""
    if role not in ROLES:
        raise InvalidArgument(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 100:
        raise InvalidArgument("a key's name is 1 to 100 characters (it is the actor in logs)")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    with transaction(app.sessions) as session:
        if key_named(session, name) is not None:
            raise IdentityError(f"a key named {name!r} already exists (revoke it, or choose another name)")
        creator = resolve_actor(actor)
        row = add_key(
            session,
            ApiKey(
                name=name,
                role=role,
                key_id=key_id,
                salt=salt,
                key_hash=_digest(salt, secret),
                created_by=creator,
                expires_at=expires_at,
            ),
        )
        details = {"role": role, "key_id": key_id, "expires_at": expires_at.isoformat() if expires_at else None}
        record_audit_event(session, creator, "create_api_key", subject=name, details=details)
        return CreatedKey(record_of(row), f"{PREFIX}_{key_id}_{secret}")


def list_keys(app: App, limit: int | None = None, cursor: str | None = None) -> Page[KeyRecord]:
    """Oldest first, a page of `limit` at a time (every key when None)."""
    offset = decode_cursor(cursor)
    with app.sessions() as session:
        rows = all_keys(session, None if limit is None else limit + 1, offset)
        total = count_keys(session)
    return page_of(rows, offset, len(rows) if limit is None else limit, total).map(record_of)


def revoke_key(app: App, name: str, actor: str | None = None) -> KeyRecord:
    """Revoke the key named `name` and end its UI sessions; revoking twice is harmless (the first is reported)."""
    with transaction(app.sessions) as session:
        row = key_named(session, name)
        if row is None:
            raise NotFound(f"no API key named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            revoke_sessions_of_key(session, row.key_id, row.revoked_at)
            record_audit_event(
                session, resolve_actor(actor), "revoke_api_key", subject=name, details={"key_id": row.key_id}
            )
        return record_of(row)


def authenticate(app: App, key: str | None) -> KeyRecord:
    """The record of the key a request presents; Unauthorized (naming no key material) otherwise."""
    if not key:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not key_id or not secret:
        raise Unauthorized("the API key is malformed")
    with transaction(app.sessions) as session:
        row = key_with_id(session, key_id)
        if row is None or not hmac.compare_digest(row.key_hash, _digest(row.salt, secret)):
            raise Unauthorized("the API key is not valid")
        check_usable(row)
        now = utcnow()
        if (
            row.last_used_at is None
            or (naive_utc(now) - naive_utc(row.last_used_at)).total_seconds() > USE_RESOLUTION_S
        ):
            mark_used(session, row, now)  # not on every request: a write per search would serialize them
        return record_of(row)


def check_usable(row: ApiKey, now: datetime | None = None) -> None:
    """Unauthorized when the key was revoked or has expired (both refused alike, with a 401)."""
    if row.revoked_at is not None:
        raise Unauthorized(f"the API key {row.name!r} was revoked")
    if row.expires_at is not None and naive_utc(row.expires_at) <= naive_utc(now or utcnow()):
        raise Unauthorized(f"the API key {row.name!r} has expired")


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def record_of(row: ApiKey) -> KeyRecord:
    return KeyRecord(
        name=row.name,
        role=Role(row.role),
        key_id=row.key_id,
        created_at=row.created_at.isoformat(),
        created_by=row.created_by,
        revoked_at=row.revoked_at.isoformat() if row.revoked_at else None,
        last_used_at=row.last_used_at.isoformat() if row.last_used_at else None,
        expires_at=naive_utc(row.expires_at).replace(tzinfo=UTC).isoformat() if row.expires_at else None,
    )  # aware on create and on read (SQLite hands back naive UTC)
