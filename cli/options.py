"""Options and parsers shared by several commands."""

from __future__ import annotations

from typing import Any

import typer

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def parse_attrs(pairs: list[str] | None) -> dict[str, Any]:
    """`k=v` pairs into a dict; a pair without '=' is a usage error naming it."""
    attrs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--attr")
        attrs[key.strip()] = value
    return attrs
