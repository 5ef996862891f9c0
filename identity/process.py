"""What this process is, for lock files and messages that name another process.

The CLI sets the command once at start-up (e.g. "identity worker"); library users
and tests get the program's name.
"""

from __future__ import annotations

import sys
from pathlib import Path

_command: str | None = None


def set_command(name: str) -> None:
    global _command
    _command = name


def command() -> str:
    return _command or Path(sys.argv[0] or "python").name
