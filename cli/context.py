"""Process-edge state of the CLI: the settings for this invocation and --debug.

Only the CLI holds this; the library receives settings as arguments.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from identity.config import Settings

if TYPE_CHECKING:
    from identity.app.runtime import Runtime


@dataclass
class CliState:
    debug: bool = False
    config_file: Path | None = None
    settings: Settings | None = None


state = CliState()


def get_settings() -> Settings:
    if state.settings is None:
        state.settings = Settings.load(config_file=state.config_file)
    return state.settings


@contextmanager
def open_store(read_only: bool = False) -> Iterator["Runtime"]:
    """The store for this command (the application core's SQL side); `read_only`: NoStore rather than create one."""
    from identity.app.runtime import Runtime

    with Runtime.open(get_settings(), must_exist=read_only) as runtime:
        yield runtime
