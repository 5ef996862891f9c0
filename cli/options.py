"""Options and parsers shared by several commands."""

from __future__ import annotations

from typing import Any

import typer

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
ACTOR = typer.Option(None, "--actor", help="Who does this (recorded); default: the OS user.")


def parse_attrs(pairs: list[str] | None) -> dict[str, Any]:
    """--attr `k=v` pairs into a dict (a repeated key: the last wins); a pair without '=' is a usage error naming it."""
    return {key: values[-1] for key, values in _pairs(pairs, "--attr").items()}


def parse_filters(pairs: list[str] | None) -> dict[str, str | list[str]]:
    """--filter `k=v` pairs: a key given several times matches any of its values."""
    return {key: values[0] if len(values) == 1 else values for key, values in _pairs(pairs, "--filter").items()}


def _pairs(pairs: list[str] | None, option: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint=option)
        grouped.setdefault(key.strip(), []).append(value)
    return grouped
