"""`/docs`: Swagger UI from the `fastapi-offline` package's files, so it works with no network.

FastAPI's own page loads Swagger UI from a CDN (blank offline) and starts it with an
inline script (which a CSP without 'unsafe-inline' blocks). Here the page, its start-up
script and Swagger UI's files are all served by this app: nothing is fetched elsewhere.
The files come from fastapi-offline (Swagger UI 5) rather than swagger-ui-bundle, whose
Swagger UI 4 cannot read the OpenAPI 3.1 that FastAPI writes (the page stays empty).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from identity.api.errors import ApiError

router = APIRouter(prefix="/docs", include_in_schema=False)
FILES = files("fastapi_offline") / "static"  # only its files are used, not its FastAPI subclass
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon.png"})  # all the page uses

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>identity API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise send the schema to validator.swagger.io for a badge.
START = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
"""


@router.get("", response_class=HTMLResponse)
def page() -> str:
    return PAGE


@router.get("/start.js")
def start() -> Response:
    return Response(START, media_type="text/javascript")


@router.get("/assets/{name}")
def asset(name: str) -> FileResponse:
    """One of Swagger UI's files the page uses; nothing else of the package (nor any other path) is served."""
    if name not in ASSETS:
        raise ApiError(404, f"no such asset: {name}")
    return FileResponse(str(FILES / name))
