"""Security headers on every response, and the UI's stylesheet served as a file.

A plain ASGI middleware (outside the router, so errors, redirects and 404s get them too):

- a Content-Security-Policy with no inline script or style: the pages load only
  /static/identity.css and the review page's /static/review.js (which posts to this origin);
  images are the app's own or data: URIs (thumbnails, the searched
  photo); `frame-ancestors 'none'` and X-Frame-Options DENY, so the erase and merge forms
  cannot be framed (clickjacking);
- X-Content-Type-Options nosniff and Referrer-Policy same-origin (a URL holds a person's id: no other
  site sees it; same-origin keeps the Origin header on the UI's own form posts, which sign-in checks);
- Cache-Control no-store on everything but the stylesheet: pages, thumbnails and /v1
  answers carry faces and names, which no browser or proxy cache should keep.

The interactive API docs (/docs, /redoc) are the one exception to the inline rule: their
HTML starts Swagger UI or ReDoc with an inline script; they get scripts and styles from this
origin and inline, and nothing from another site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC = "/static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
COMMON = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def headers_for(path: str) -> dict[str, str]:
    """The security headers of a response to `path`."""
    docs = any(path == p or path.startswith(p + "/") for p in DOCS_PATHS)
    values = {**COMMON, "content-security-policy": DOCS_CSP if docs else PAGE_CSP}
    if not path.startswith(STATIC + "/"):
        values["cache-control"] = "no-store"
    return values


class SecurityHeaders:
    """Sets the headers of `headers_for` on every HTTP response, replacing any the app set."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.encode("latin-1") for name in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure(api: FastAPI) -> None:
    """Serve the UI's stylesheet and put the security headers on every response."""
    api.mount(STATIC, StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    api.add_middleware(SecurityHeaders)
