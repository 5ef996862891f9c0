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
    from identity.app.core import App
    from identity.services.deployment import Deployment


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
def open_app(read_only: bool = False, schema: str | None = None) -> Iterator["App"]:
    """The application object for this command, closed when it ends.

    `read_only`: a missing store is NoStore rather than created; `schema`: the schema policy
    (identity.app.schema; default: create a missing schema, refuse an older one).
    """
    from identity.app.core import App
    from identity.app.schema import CREATE

    with App.open(get_settings(), must_exist=read_only, schema=schema or CREATE) as core:
        yield core


@contextmanager
def open_deployment(read_only: bool = False) -> Iterator["Deployment"]:
    """The active model's view of this command's App (identity.services.deployment)."""
    from identity.services.deployment import deployment

    with open_app(read_only) as core:
        yield deployment(core)
