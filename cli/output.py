"""One place that renders command results: a rich table for people, JSON for scripts.

Rows are produced once by the command (plain dicts of JSON-able values) and
rendered here, so every list command behaves the same way with --json.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from identity.pathnames import shown, utf8_safe
from identity.serialize import to_json

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


class _Written:
    """Whether this command has printed its JSON document, so an error after it adds no second one."""

    json = False


written = _Written()


def print_json(data: Any) -> None:
    # Strict JSON: a non-finite number (a degenerate measurement) is null, never NaN/Infinity.
    written.json = True
    sys.stdout.write(
        json.dumps(_finite(plain(data)), indent=2, default=str, ensure_ascii=False, allow_nan=False) + "\n"
    )


def plain(data: Any) -> Any:
    """A service's typed result (a dataclass, or a list of them) as the plain data --json prints."""
    return to_json(data)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return utf8_safe(value)  # a file name that is not UTF-8 must not stop the document
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str], title: str | None = None) -> None:
    table = Table(title=title)
    cols = list(columns)
    for col in cols:
        table.add_column(col.replace("_", " "))
    for row in rows:
        # Text, not markup: a name like "[/red]" or "[link=...]" from a user's folder is shown as it is.
        table.add_row(*(Text(_cell(row.get(col))) for col in cols))
    console.print(table)


def render(data: Any, as_json: bool, columns: Iterable[str] | None = None, title: str | None = None) -> None:
    """--json prints `data` as is; otherwise a table of `data` (a list of dicts) or key/value pairs.

    `data` may be a service's typed result, or a list of them: they render as identity.serialize writes them.
    """
    data = plain(data)
    if as_json:
        print_json(data)
    elif isinstance(data, dict):
        print_table([{"setting": k, "value": v} for k, v in data.items()], ["setting", "value"], title)
    else:
        rows = list(data)
        print_table(rows, columns or (rows[0].keys() if rows else []), title)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return shown(json.dumps(value, default=str, ensure_ascii=False))
    return shown(value)  # names and paths come from users' folders: no control character reaches the terminal


def warn_scan_limited(image: str, width: int, height: int, limit_px: float) -> None:
    """One line on stderr when the detector's time budget kept it from looking for faces as small as wanted."""
    from identity.faces import scan_limit_warning

    err_console.print(
        f"warning: {scan_limit_warning(shown(image), width, height, limit_px)}", markup=False, highlight=False
    )


def warn_capped(image: str, dropped: int) -> None:
    """One line on stderr (so --json stays clean) when a photo held more faces than faces.max_faces."""
    err_console.print(
        f"warning: {shown(image)}: {dropped} more faces found than faces.max_faces; the lowest-scored were dropped",
        markup=False,
        highlight=False,
    )
