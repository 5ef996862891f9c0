"""Process-edge state of the CLI: the settings for this invocation and --debug.

Only the CLI holds this; the library receives settings as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from identity.config import Settings


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
