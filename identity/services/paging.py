"""Lists a page at a time: every list an API answers is `{"items": [...], "next": CURSOR|null, "total": N}`.

A cursor is opaque to clients (base64url of a small JSON object): today it holds the offset of
the next page, so a later keyset cursor can replace it without changing what clients send.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from identity.errors import InvalidArgument

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # the cursor of the following page; None on the last
    total: int  # items matching the query, on every page

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page([convert(item) for item in self.items], self.next, self.total)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor names (0 for none); a cursor this server did not write is a clear 422."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument(
            f"cursor {cursor[:40]!r} is not one this server gave: pass a list's `next` back"
        ) from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"cursor {cursor[:40]!r} is not one this server gave: pass a list's `next` back")
    return offset


def page_of(rows: Sequence[T], offset: int, limit: int, total: int) -> Page[T]:
    """A page from `rows` fetched as limit + 1 rows at `offset` (the extra row says a next page exists)."""
    more = len(rows) > limit
    return Page(list(rows[:limit]), encode_cursor(offset + limit) if more else None, total)
