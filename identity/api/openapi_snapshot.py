"""The API's `/openapi.json` as a file: `python -m identity.api.openapi_snapshot tests/openapi.json`.

tests/test_openapi.py compares the app's schema with the committed snapshot, so a change
to the API (a route, a field, a status) is made on purpose: after one, this command
rewrites the snapshot and the diff shows what a generated client will see change.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def current_schema() -> dict[str, Any]:
    """The schema of an app over a scratch data dir (the schema depends on no setting nor stored data)."""
    from identity.api.app import create_api
    from identity.app.core import App
    from identity.config import Settings

    with tempfile.TemporaryDirectory(prefix="identity-openapi-") as tmp, App.open(Settings(data_dir=Path(tmp))) as core:
        api = create_api(core)  # the lifespan does not run: no model is loaded, no store touched
        try:
            return api.openapi()
        finally:
            api.state.ctx.close()


def render(schema: dict[str, Any]) -> str:
    """Stable text: the routes in their order, indented, so a diff reads line by line."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m identity.api.openapi_snapshot PATH (e.g. tests/openapi.json)", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(current_schema()), encoding="utf-8")
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
