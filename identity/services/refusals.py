"""The database's refusals of what a request asked, as kinds a caller can act on (the HTTP API maps them
to 422, 409 and 503); defined with the SQL errors in identity.store.sql.errors."""

from identity.store.sql.errors import CONFLICT, INVALID, REFUSALS, UNAVAILABLE, refusal_kind

__all__ = ["CONFLICT", "INVALID", "REFUSALS", "UNAVAILABLE", "refusal_kind"]
