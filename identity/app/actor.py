"""Who is acting, for the search log and audit events: --actor, else the OS user."""

from __future__ import annotations

import getpass


def resolve_actor(actor: str | None = None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
