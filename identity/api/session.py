"""The review UI's session cookie: a signed random token naming a session row in SQL.

The cookie holds no key material. The row (identity.services.access.sessions) is re-read on
every request, so sign-out, key revocation and key expiry end the session at once. The
signature lets a forged or stale cookie be refused without a database query.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from identity.app.core import App
from identity.config import Settings
from identity.errors import IdentityError
from identity.services.access.sessions import OpenSession, end_session, open_session, session_for

COOKIE = "identity_session"
MAX_AGE_S = 12 * 3600


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self._signer = URLSafeTimedSerializer(session_secret(settings), salt="identity-ui")
        self._behind_tls = settings.api.behind_tls

    def issue(self, core: App, key_id: str) -> tuple[OpenSession, str]:
        """A new session (a new id at every sign-in) and its cookie value."""
        opened = open_session(core, key_id, MAX_AGE_S)
        return opened, self._signer.dumps(opened.token)

    def read(self, core: App, cookie: str | None) -> OpenSession | None:
        """The cookie's session if it is still open, else None."""
        token = self._token(cookie)
        if token is None:
            return None
        try:
            return session_for(core, token)
        except IdentityError:  # ended, expired, or its key revoked or expired
            return None

    def end(self, core: App, cookie: str | None) -> None:
        token = self._token(cookie)
        if token is not None:
            end_session(core, token)

    def secure(self, request: Request) -> bool:
        """`Secure` when told the server runs behind TLS, or when the scheme seen (with proxy headers) is https."""
        return self._behind_tls or request.url.scheme == "https"

    def _token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            return str(self._signer.loads(cookie, max_age=MAX_AGE_S))
        except BadSignature:  # tampered, from another secret, or older than any session
            return None


def session_secret(settings: Settings) -> str:
    """The configured secret, else one generated once and kept (owner-only) in the data directory."""
    if settings.api.session_secret:
        return settings.api.session_secret
    path = Path(settings.data_dir) / "session_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server process wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path.read_text().strip()
