"""Request ids and the access log: every response carries `X-Request-ID`, every log line of the
request names it, and the access line names the route template, never the path.

A path can hold a person's external id (`/v1/persons/<id>/merge`) and a query string a name,
so uvicorn's access log (which prints both) is replaced by this middleware's line
(`identity serve` turns uvicorn's off), and `RedactingFormatter` takes the request's path
parameters and query values out of every other line (a traceback's exception text
included). The id is the client's `X-Request-ID` when it is a sane token (a proxy's or a
caller's, so their logs and ours join), else a new one.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# The request's ASGI scope: the router fills in its path parameters after the middleware set it.
REQUEST_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("request_scope", default=None)
access = logging.getLogger("identity.api.access")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
LOG_CONFIG: dict[str, Any] = {  # `identity serve`'s logging: uvicorn's loggers and ours, one format, one stream
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "identity.api.request_id.RedactingFormatter", "format": LOG_FORMAT}},
    "filters": {"request_id": {"()": "identity.api.request_id.WithRequestId"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
        "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}


class RequestIds:
    """Pure ASGI middleware (outermost): sets the request id, adds the header, writes the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if SANE.fullmatch(given) else uuid.uuid4().hex
        # Not reset at the end: the server runs each request in its own task (its own context), and the
        # line Starlette's outermost error middleware logs for a 500 comes after this middleware returns.
        REQUEST_ID.set(rid)
        REQUEST_SCOPE.set(scope)
        started, status = time.perf_counter(), [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            route = getattr(scope.get("route"), "path", "unmatched")  # the template, filled in by the router
            access.info(
                "%s %s %s %d %.1f ms",
                client[0] if client else "-",
                scope.get("method"),
                route,
                status[0],
                (time.perf_counter() - started) * 1000,
            )


class WithRequestId(logging.Filter):
    """A handler's filter: every record it writes names the current request's id ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class RedactingFormatter(logging.Formatter):
    """Writes a line with the current request's path parameters and query values taken out.

    Those are where a caller puts a person's external id, uuid or name; a library's message
    or an exception's text may repeat them (SQL parameters are hidden by the engine itself).
    """

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for value, placeholder in _request_values():
            line = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", placeholder, line)
        return line


def _request_values() -> list[tuple[str, str]]:
    """(value, placeholder) pairs to take out of the current request's lines, longest first."""
    scope = REQUEST_SCOPE.get()
    if scope is None:
        return []
    pairs = [(str(value), f"{{{name}}}") for name, value in (scope.get("path_params") or {}).items()]
    query = scope.get("query_string", b"").decode("latin-1")
    pairs += [(value, f"<{name}>") for name, value in parse_qsl(query, keep_blank_values=False)]
    pairs += [(raw, "<query>") for raw in (query, unquote(query))]
    found = {value: placeholder for value, placeholder in pairs if len(value) >= 2}
    return sorted(found.items(), key=lambda pair: -len(pair[0]))
