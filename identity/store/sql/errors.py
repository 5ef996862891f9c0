"""Database errors as services handle them, so the services package imports no sqlalchemy itself.

IntegrityError: a unique key another writer took first (bind, enroll retry on it).
DataError: a value the database rejects (enroll fails that job alone).
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

__all__ = ["DataError", "IntegrityError", "database_refusal"]


def database_refusal(exc: BaseException) -> str | None:
    """The first line of the database driver's message when it refused a statement; None for any other error."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip().splitlines()[0]
    return None
