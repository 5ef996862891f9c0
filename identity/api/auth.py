"""Who is calling: the one check of a request's API key, shared by route dependencies and middleware.

It works from plain header values (not a Request), so an ASGI middleware that must know the
caller before the body is read (identity.api.limits) can use it as the routes do. Failed
attempts are counted per key id and per client address (identity.api.throttle) and refused
with 429 past the limit; the body limit's early look counts nothing, so a request with a
wrong key counts once, at its route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fastapi import Request

from identity.api.context import ApiContext
from identity.api.errors import ApiError
from identity.api.session import COOKIE
from identity.errors import IdentityError
from identity.services.access.keys import PREFIX, Forbidden, KeyRecord, Unauthorized, authenticate

log = logging.getLogger("identity.api")


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def throttle_subjects(key: str | None, client: str | None) -> tuple[str, str]:
    """What failures are counted against: the key's public id (never its secret) and the address."""
    prefix, _, rest = (key or "").partition("_")
    key_id = rest.partition("_")[0] if prefix == PREFIX else ""
    sane = key_id.isascii() and key_id.isalnum() and len(key_id) <= 16  # it is logged: no odd text from a caller
    return (f"key:{key_id}" if key_id and sane else "", f"addr:{client}" if client else "")


def identify(ctx: ApiContext, key: str | None, client: str | None) -> KeyRecord:
    """The key's record; Unauthorized (401) when it is missing or not valid, ApiError 429 when throttled."""
    subjects = throttle_subjects(key, client)
    ctx.throttle.check(*subjects)
    try:
        return authenticate(ctx.core, key)
    except Unauthorized:  # only a refused key counts: a store that is down is no caller's failure
        ctx.throttle.failed(*subjects)
        raise


def known_caller(
    ctx: ApiContext, authorization: str | None, cookies: Mapping[str, str], client: str | None
) -> KeyRecord | None:
    """The valid key behind the bearer header or the UI session cookie; None for an anonymous, refused or
    throttled caller (then the route says why). Counts no failure. Blocking (SQL): call it off the event loop."""
    key = bearer_key(authorization)
    try:
        if key is not None:
            ctx.throttle.check(*throttle_subjects(key, client))
            return authenticate(ctx.core, key)
        session = ctx.sessions.read(ctx.core, cookies.get(COOKIE))
        return session.key if session is not None else None
    except (IdentityError, ApiError):
        return None


def caller(permission: str) -> Callable[..., KeyRecord]:
    """A route's dependency: the request's key, which must allow `permission` (401/403 otherwise, logged)."""

    def check(request: Request) -> KeyRecord:
        route = getattr(request.scope.get("route"), "path", "?")  # the template: a path can name a person
        client = request.client.host if request.client else None
        try:
            record = identify(request.app.state.ctx, bearer_key(request.headers.get("authorization")), client)
        except IdentityError as exc:
            log.warning("401 %s %s: %s", request.method, route, exc.message)
            raise
        if not record.allows(permission):
            log.warning(
                "403 %s %s: key %r (role %s) lacks %s", request.method, route, record.name, record.role, permission
            )
            raise Forbidden(f"the key {record.name!r} (role {record.role}) may not do this ({permission} needed)")
        return record

    return check
