"""Request ids and the access log: every response carries `X-Request-ID`, every log line of the
request names it, and the access line names the route template, never the path.

A path can hold a person's external id (`/v1/persons/<id>/merge`) and a query string a name,
so uvicorn's access log (which prints both) is replaced by this middleware's line
(`identity serve` turns uvicorn's off). The id is the client's `X-Request-ID` when it is a
sane token (a proxy's or a caller's, so their logs and ours join), else a new one.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access = logging.getLogger("identity.api.access")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
LOG_CONFIG: dict[str, Any] = {  # `identity serve`'s logging: uvicorn's loggers and ours, one format, one stream
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": LOG_FORMAT}},
    "filters": {"request_id": {"()": "identity.api.request_id.WithRequestId"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr",
                            "filters": ["request_id"]}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
                "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
                "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False}},
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
            access.info("%s %s %s %d %.1f ms", client[0] if client else "-", scope.get("method"), route, status[0],
                        (time.perf_counter() - started) * 1000)


class WithRequestId(logging.Filter):
    """A handler's filter: every record it writes names the current request's id ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True
