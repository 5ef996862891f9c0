"""The v1 list shape's cursors: what a client passes back pages on; anything else is one clear error."""

from __future__ import annotations

import pytest

from identity.errors import InvalidArgument
from identity.services.paging import decode_cursor, encode_cursor, page_of


def test_a_page_names_the_next_until_the_last() -> None:
    rows = list(range(7))
    first = page_of(rows[0:4], 0, 3, total=7)  # fetched limit + 1 rows: a next page exists
    assert (first.items, first.total) == ([0, 1, 2], 7)
    assert first.next is not None and decode_cursor(first.next) == 3
    last = page_of(rows[6:10], 6, 3, total=7)
    assert (last.items, last.next) == ([6], None)


@pytest.mark.parametrize("cursor", ["not-a-cursor!", encode_cursor(5)[:-2] + "??", "eyJ4IjoxfQ", "eyJvIjotMX0"])
def test_a_cursor_this_server_did_not_write_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidArgument, match="is not one this server gave"):
        decode_cursor(cursor)


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None) == decode_cursor("") == 0
