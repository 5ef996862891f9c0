"""Error texts for API callers: the library's messages name CLI commands, an API caller needs the HTTP action.

The services word their errors for the CLI (`use identity person update`); the API's error
handler passes each message through `for_api`, a fixed table of the commands that have an
HTTP equivalent. Operator-only commands (`identity doctor --repair`) stay, said to be the
server operator's.
"""

from __future__ import annotations

import re

_ACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"`identity person update`"), "PATCH /v1/persons/{person}"),
    (re.compile(r"`identity person delete [^`]*`"), "DELETE /v1/persons/{person}"),
    (re.compile(r"`identity doctor --repair`"), "`identity doctor --repair` (the server's operator)"),
)


def for_api(message: str) -> str:
    """`message` with every CLI command that has an HTTP equivalent replaced by that action."""
    for command, action in _ACTIONS:
        message = command.sub(action, message)
    return message
