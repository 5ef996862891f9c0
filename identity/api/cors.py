"""Cross-origin calls: off unless setting api.cors_origins (IDENTITY_API__CORS_ORIGINS) lists origins.

Only listed origins get CORS headers and an answered preflight; credentials (cookies) are not
allowed cross-origin: the review UI is same-origin only, API callers send a bearer key.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware


def allow_cross_origin(api: FastAPI, origins: str | None) -> None:
    listed = [o.strip().rstrip("/") for o in (origins or "").split(",") if o.strip()]
    if listed:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=listed,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
