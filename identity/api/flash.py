"""The UI's success banners by code: a redirect names what happened (`?flash=erased`), the page says it.

Never free text from the query string: a link of another site could otherwise make the
banner say anything (`Your session expired. Sign in again at http://evil.example`), and a
person's id in a URL ends up in logs and browser history. Unknown codes show nothing.
"""

from __future__ import annotations

from urllib.parse import quote

MESSAGES = {
    "erased": "The person was erased from every store.",
    "merged": "The persons were merged: every photo and search hit moved to this person.",
    "face-moved": "The face was moved.",
    "face-deleted": "The face was deleted.",
    "confirmed": "The match was confirmed.",
    "rejected": "The match was rejected.",
    "cluster-named": "The cluster was named and its faces enrolled.",
    "cluster-discarded": "The cluster was discarded.",
}


def flash_message(code: str | None) -> str | None:
    """The banner for `code`; None for no code or one not in the table."""
    return MESSAGES.get(code or "")


def flashed(path: str, code: str) -> str:
    """`path` with the banner `code` (one of MESSAGES) to show there."""
    if code not in MESSAGES:
        raise ValueError(f"no flash message {code!r}")  # a programming error: every code is in the table
    return f"{path}?flash={quote(code)}"
