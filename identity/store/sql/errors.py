"""Database errors as services handle them, so the services package imports no sqlalchemy itself.

IntegrityError: a unique key another writer took first (bind, enroll retry on it).
DataError: a value the database rejects (enroll fails that job alone).
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

__all__ = ["DataError", "IntegrityError", "REFUSALS", "database_refusal", "refusal_kind"]

REFUSALS = (ValueError, OverflowError, DBAPIError)  # the error types refusal_kind may recognise

INVALID, CONFLICT, UNAVAILABLE = "invalid", "conflict", "unavailable"


def refusal_kind(exc: BaseException) -> tuple[str, str] | None:
    """(kind, reason) when the database (or its driver) refused what a request asked: a value it cannot
    hold (`invalid`: a NUL character for Postgres, a number out of range), a unique key taken
    (`conflict`), or a connection it lost (`unavailable`); None for any other error."""
    if isinstance(exc, ValueError) and "NUL (0x00)" in str(exc):
        return INVALID, "text cannot contain NUL (0x00) characters"
    if isinstance(exc, OverflowError):
        return INVALID, f"a number is out of the database's range ({exc})"
    reason = database_refusal(exc)
    if reason is None:
        return None
    if isinstance(exc, IntegrityError):
        return CONFLICT, reason
    if isinstance(exc, (OperationalError, InterfaceError)):
        return UNAVAILABLE, reason
    return INVALID, reason


def database_refusal(exc: BaseException) -> str | None:
    """The first line of the database driver's message when it refused a statement; None for any other error."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip().splitlines()[0]
    return None
