"""The error types the library raises and the exit codes the CLI maps them to.

Every error carries a one-line, user-facing message; the CLI prints it without a
traceback (unless --debug) and exits with the error's code.
"""

from __future__ import annotations

from typing import Any


class ExitCode:
    OK = 0
    ERROR = 1  # a domain error: bad input, a missing record, a failed check
    USAGE = 2  # wrong arguments (Typer/Click's own code)
    NO_FACE = 3  # search/detect found no face in an image
    UNAVAILABLE = 4  # a store (database, vector engine) cannot be reached or opened
    PARTIAL = 5  # a bulk run finished, but some images failed or conflicted


class IdentityError(Exception):
    """Base of every error the product explains to its user."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details  # JSON-able facts behind the message, for scripts (--json)

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        """The error as a script reads it under --json."""
        return {"error": self.message, "exit_code": self.exit_code, "error_type": type(self).__name__, **self.details}


class ConfigError(IdentityError):
    """A setting is malformed (bad URL, unknown model, wrong type)."""


class InvalidArgument(IdentityError):
    """A value given to a command or a service is out of its range (a threshold of 2, nan, inf)."""


class StoreUnavailable(IdentityError):
    """A database or vector engine cannot be reached, or is held by another process."""

    exit_code = ExitCode.UNAVAILABLE


class StoreLocked(StoreUnavailable):
    """The embedded vector store is held by another process (details name it: pid, command, since)."""


class StoreMismatch(StoreUnavailable):
    """The database is bound to another vector store than the one this process would use."""


class ErasurePending(StoreUnavailable):
    """An erasure was recorded but not finished (a store failed part-way); the message says how to finish it."""


class StoreDamaged(StoreUnavailable):
    """A store's files are damaged (unreadable, truncated, corrupt values); the message says what to run."""


class NoSpace(StoreUnavailable):
    """Too little free disk space for the embedded vector store to grow (its files are sparse: a write into
    a page the disk cannot supply would kill the process with SIGBUS)."""


class NoStore(StoreUnavailable):
    """A command that only reads found no identity store where the settings point (it creates none)."""


class SchemaOutdated(StoreUnavailable):
    """The store's schema is older than the code; only `identity init` upgrades it."""


class TemplatesMissing(StoreUnavailable):
    """The store holds faces but no person templates (it is from before them); a read builds none:
    `identity init` (or any writing command, or `identity doctor --repair`) does."""


class RepairRefused(IdentityError):
    """`doctor --repair` would delete more vectors than its limit allows without --force (exit 1)."""


class InvalidVector(IdentityError):
    """A vector cannot be stored or searched: zero, not finite, or of the wrong length."""


class DimensionMismatch(InvalidVector):
    """A vector's length does not match the collection it is meant for."""


class NotFound(IdentityError):
    """A person, face or other record named by the user does not exist."""


class ImageError(IdentityError):
    """An image file cannot be used: missing, empty, corrupt, unsupported, too large."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path=str(path), reason=reason)
        self.path = str(path)
        self.reason = reason


class NoFaceFound(IdentityError):
    exit_code = ExitCode.NO_FACE

    def __init__(self, path: object) -> None:
        super().__init__(f"no face found in {path}", path=str(path))
        self.path = str(path)


class ModelError(IdentityError):
    """A model pack cannot be built: unknown name, missing or unreadable weights."""
