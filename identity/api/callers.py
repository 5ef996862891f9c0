"""Who is calling: the one check of a request's credentials, before and apart from the routes' permission checks.

The body limit (identity.api.limits) runs it before anything reads the body, to decide how much
a caller may send; the routes check the permission again. Either credential counts: the
Authorization bearer key, or the review UI's session cookie.
"""

from __future__ import annotations

from typing import Any

from identity.api.session import COOKIE
from identity.errors import IdentityError
from identity.services.keys import KeyRecord, authenticate, key_in_session


def bearer(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def identify(ctx: Any, authorization: str | None, cookies: dict[str, str]) -> KeyRecord | None:
    """The valid key behind the request's bearer header or UI session cookie; None for an anonymous caller.

    `ctx` is the server's ApiContext (its App and its UI sessions). Blocking (SQL): call it off the
    event loop. A store that cannot answer makes the caller anonymous here; the route then says why.
    """
    key = bearer(authorization)
    try:
        if key is not None:
            return authenticate(ctx.core, key)
        session = ctx.sessions.read(cookies.get(COOKIE))
        return key_in_session(ctx.core, session.key_id) if session is not None else None
    except IdentityError:
        return None
