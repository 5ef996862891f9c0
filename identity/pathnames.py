"""File names as text that every store and terminal takes, and back to the name on disk.

A POSIX file name is bytes. Python hands a name that is not valid UTF-8 over as a str with
lone surrogates (surrogateescape), which SQLite, Postgres, JSON and a UTF-8 terminal all
refuse. So a path is stored and shown as `path_text`: valid UTF-8 names unchanged, each
undecodable byte as `\\xNN` (what Python's backslashreplace writes). `fs_path` turns that
text back into the name to open. The two are exact inverses: a literal backslash that could
be read as such an escape is itself written `\\x5c`.

`shown` is for terminals: it also escapes control characters (an ESC in a folder name
would otherwise drive the terminal).
"""

from __future__ import annotations

import os
import re

# The escapes fs_path reads back: an undecodable byte (0x80-0xff) or an escaped backslash.
_ESCAPE = r"\\x(5c|[89a-f][0-9a-f])"
_LITERAL_BACKSLASH = re.compile(rb"\\(?=x(?:5c|[89a-f][0-9a-f]))")
_ESCAPED = re.compile(_ESCAPE.encode())
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def path_text(path: str | os.PathLike[str]) -> str:
    """The name as stored and reported: valid UTF-8, reversible by fs_path."""
    raw = os.fsencode(path)
    if b"\\" not in raw:
        try:
            return raw.decode("utf-8")  # the common case: nothing to escape
        except UnicodeDecodeError:
            pass
    return _LITERAL_BACKSLASH.sub(rb"\\x5c", raw).decode("utf-8", "backslashreplace")


def fs_path(text: str) -> str:
    """The name on disk for a path_text (surrogateescape str, as os functions take it)."""
    if "\\x" not in text:
        return text
    raw = _ESCAPED.sub(lambda m: bytes([int(m[1], 16)]), text.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw)


def shown(text: object) -> str:
    """Text safe to print on a terminal: control characters and undecodable bytes escaped."""
    value = str(text)
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub(lambda m: _escape_char(m[0]), value)


def utf8_safe(text: str) -> str:
    """Text any UTF-8 writer takes (JSON on stdout, a database): lone surrogates escaped, the rest as is."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: _escape_char(m[0]), text)


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte that surrogateescape carried
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")
