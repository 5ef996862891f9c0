"""Small helpers the route modules share: key=value filters from a form or query, and blocking calls off the event
loop."""

from __future__ import annotations

from typing import Any

from identity.api.errors import ApiError


def filters(pairs: list[str] | None) -> dict[str, str | list[str]]:
    """`k=v` pairs; a key given several times matches any of its values (as the CLI's --filter)."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ApiError(422, f"filter {pair!r} is not key=value")
        grouped.setdefault(name.strip(), []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run a blocking call (inference, SQL, the vector store) in the server's thread pool."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
