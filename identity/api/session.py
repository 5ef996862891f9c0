"""The review UI's sessions: a signed cookie naming the API key it was opened with, and a CSRF token.

The cookie holds no key material: the key's public id, re-checked on every request (a
revoked key ends its sessions), and the token that every form changing data must send back.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from identity.config import Settings

COOKIE = "identity_session"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class UiSession:
    key_id: str
    csrf: str


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self._signer = URLSafeTimedSerializer(session_secret(settings), salt="identity-ui")

    def issue(self, key_id: str) -> tuple[UiSession, str]:
        """A new session and its cookie value."""
        session = UiSession(key_id, secrets.token_urlsafe(24))
        return session, self._signer.dumps({"k": session.key_id, "c": session.csrf})

    def read(self, cookie: str | None) -> UiSession | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:  # tampered, from another secret, or expired
            return None
        return UiSession(str(data["k"]), str(data["c"]))


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
