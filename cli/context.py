"""Process-edge state of the CLI: the settings for this invocation and --debug.

Only the CLI holds this; the library receives settings as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from identity.config import Settings

if TYPE_CHECKING:
    from identity.app.core import App


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
def open_app(read_only: bool = False, schema: str | None = None, deployment: bool = False) -> Iterator[App]:
    """The application object for this command, closed when it ends.

    `read_only`: a missing store is NoStore rather than created, and the deployment is read, never written;
    `schema`: the schema policy (identity.app.schema; default: create a missing schema, refuse an older one);
    `deployment`: prepare the active model's deployment now (for writes unless read_only), so a refusal comes
    before any output.
    """
    from identity.app.core import App
    from identity.app.schema import CREATE

    with App.open(get_settings(), must_exist=read_only, schema=schema or CREATE) as core:
        if deployment:
            core.deployment(write=not read_only)
        yield core
