"""The API over an App on a real uvicorn server, for the tests that need one (the UI in Chromium, raw HTTP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from identity.app.core import App

START_S = 30.0


@contextmanager
def served(core: App) -> Iterator[str]:
    """`identity serve`'s app over `core` on a free loopback port, in a thread, while the block runs: its base URL."""
    import uvicorn

    from identity.api.app import create_api

    server = uvicorn.Server(uvicorn.Config(create_api(core), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_S)
