"""/docs in a real Chromium with the network cut off: Swagger UI from the package, under a strict CSP.

The page is served with the CSP the issue asks of every page (no inline script or style), so
a Swagger UI that needed a CDN, an inline script or 'unsafe-eval' would show up here.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from identity.app.core import App
from identity.config import ApiSettings, Settings
from identity.services.access.keys import create_key

CHROMIUM = Path("/usr/bin/chromium")
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is needed for the browser tests")
uvicorn = pytest.importorskip("uvicorn")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)", allow_module_level=True)

from identity.api.app import create_api  # noqa: E402


def with_csp(app: Any) -> Any:
    """The app, every response of which carries CSP (as the security-headers middleware does)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_with_csp(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP.encode())]
            await send(message)

        await app(scope, receive, send_with_csp if scope["type"] == "http" else send)

    return wrapped


@pytest.fixture
def served(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", workers=1, api=ApiSettings(inference_workers=1))
    with App.open(settings) as core:
        key = create_key(core, "docs-reader", "admin").key
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(with_csp(create_api(core)), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", key
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def test_docs_render_offline_under_a_strict_csp_and_authorize_with_a_key(served) -> None:
    base, key = served
    elsewhere: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        def only_this_server(route: Any) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:  # offline: any other host is unreachable
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(f"{base}/docs")
        page.wait_for_selector("#operations-search-searchFaces", timeout=30_000)
        page.click("button.authorize")
        page.fill(".auth-container input", key)
        page.click(".auth-btn-wrapper button.authorize")
        page.click("button.close-modal")
        page.click("#operations-persons-listPersons .opblock-summary")
        page.click("#operations-persons-listPersons button.try-out__btn")
        page.click("#operations-persons-listPersons button.execute")
        answered = "#operations-persons-listPersons .live-responses-table tr.response .response-col_status"
        page.wait_for_selector(answered, timeout=30_000)
        status = page.inner_text(answered)
        browser.close()
    assert elsewhere == [], "the page reached for another host"
    assert problems == [], problems  # a CSP violation is reported as a console error
    assert status.strip().startswith("200"), status  # the key from Authorize went with the request
