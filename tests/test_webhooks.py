"""Issue 25, item 5: completion webhooks of queued enrollments.

A real HTTP receiver (http.server in a thread), real SQLite/Postgres, the real vector store and model, the
real worker (its sender thread) and the served app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from identity.app.core import App, open_deployment
from identity.config import ApiSettings, Settings
from identity.services.access.keys import create_key
from identity.services.curation.erasure import erase_person
from identity.services.enrollment.inputs import from_files
from identity.services.queue.jobs import queue_enrollment
from identity.services.queue.webhooks import deliver, list_deliveries
from identity.services.queue.worker import run_worker
from identity_cli.main import main

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402

SECRETS = "new-secret,old-secret"  # mid-rotation: the first signs


class Receiver:
    """A webhook receiver: answers each POST with the next of `answers` (then 200) and keeps what it got."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answers = list(answers or [])
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(received.answers.pop(0) if received.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/enrolled"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    given = Receiver()
    yield given
    given.close()


def closed_port_url() -> str:
    """A URL nothing listens on: the receiver is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    api = ApiSettings(webhook_secrets=SECRETS, webhook_backoff_s=0.2, webhook_attempts=3, webhook_timeout_s=2)
    made = Settings(data_dir=tmp_path / "data", database_url=url, workers=1, api=api)
    with open_deployment(made):
        pass
    return made


def photos(lfw: Path, person: str, count: int) -> list[Path]:
    return sorted((lfw / person).iterdir())[:count]


def verified(headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: the HMAC of the raw body under the secret the key id names."""
    by_id = {hashlib.sha256(s.encode()).hexdigest()[:8]: s for s in SECRETS.split(",")}
    secret = by_id[headers["x-identity-signature-key"]]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-identity-signature"])


def test_a_finished_batch_is_posted_once_signed_by_the_first_secret(settings, lfw_dir: Path, receiver) -> None:
    with App.open(settings) as app:
        batch, queued = queue_enrollment(app, from_files("Al_Gore", photos(lfw_dir, "Al_Gore", 2)).specs, receiver.url)
        assert queued == 2 and [d.status for d in list_deliveries(app).items] == ["waiting"]
        run_worker(app, drain=True)  # its sender's last round sends what the run finished
        [(headers, body)] = receiver.got
        assert (
            verified(headers, body)
            and headers["x-identity-signature-key"] == hashlib.sha256(b"new-secret").hexdigest()[:8]
        )
        sent = json.loads(body)
        assert sent["batch"] == batch and sent["counts"] == {"enrolled": 2}
        assert [(j["external_id"], j["outcome"], Path(j["file"]).name) for j in sent["jobs"]] == [
            ("Al_Gore", "enrolled", p.name) for p in photos(lfw_dir, "Al_Gore", 2)
        ]
        [logged] = list_deliveries(app).items
        assert (logged.status, logged.attempts, logged.last_status, logged.last_error) == ("delivered", 1, 200, None)
        assert deliver(app) == 0 and len(receiver.got) == 1  # never sent twice


def test_a_receiver_that_is_down_or_failing_gets_it_later_and_then_it_fails(settings, lfw_dir: Path) -> None:
    failing = Receiver(answers=[503])
    try:
        with App.open(settings) as app:
            queue_enrollment(app, from_files("Al_Gore", photos(lfw_dir, "Al_Gore", 1)).specs, failing.url)
            queue_enrollment(
                app, from_files("Aaron_Peirsol", photos(lfw_dir, "Aaron_Peirsol", 1)).specs, closed_port_url()
            )
            run_worker(app, drain=True)
            down, answered = list_deliveries(app).items  # newest first
            assert (answered.status, answered.attempts, answered.last_status) == ("pending", 1, 503)
            assert (down.status, down.attempts, down.last_status) == ("pending", 1, None)
            assert "not delivered" in down.last_error and "503" in answered.last_error
            assert deliver(app) == 0  # not due yet: the back-off holds it

            time.sleep(0.3)  # the first back-off (0.2 s) passes
            assert deliver(app) == 2
            down, answered = list_deliveries(app).items
            assert (answered.status, answered.attempts, answered.last_error) == ("delivered", 2, None)
            assert (down.status, down.attempts) == ("pending", 2)
            assert len(failing.got) == 2 and failing.got[0][1] == failing.got[1][1]  # the same body, again

            time.sleep(0.9)  # the second back-off (0.8 s): the third and last attempt
            deliver(app)
            down, _ = list_deliveries(app).items
            assert (down.status, down.attempts, down.next_attempt_at) == ("failed", 3, None)
    finally:
        failing.close()


def test_a_pending_delivery_about_an_erased_person_is_dropped(settings, lfw_dir: Path) -> None:
    with App.open(settings) as app:
        queue_enrollment(app, from_files("Al_Gore", photos(lfw_dir, "Al_Gore", 1)).specs, closed_port_url())
        run_worker(app, drain=True)
        assert list_deliveries(app, "pending").total == 1
        erased = erase_person(app, "Al_Gore")
        assert erased.removed.sql["webhook_deliveries_dropped"] == 1
        [dropped] = list_deliveries(app).items
        assert (dropped.status, dropped.next_attempt_at) == ("dropped", None)
        time.sleep(0.3)
        assert deliver(app) == 0  # never sent


def test_the_http_api_takes_a_callback_url_and_shows_the_log(
    settings, lfw_dir: Path, receiver, capsys, clean_env, monkeypatch
) -> None:
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("enroll", "admin")}
        with TestClient(create_api(core)) as client:
            enroll = {"Authorization": f"Bearer {keys['enroll']}"}
            photo = photos(lfw_dir, "Al_Gore", 1)[0]
            files = [("image", (photo.name, photo.read_bytes(), "image/jpeg"))]
            bad = client.post(
                "/v1/enrollments/uploads",
                data={"person": "Al_Gore", "callback_url": "ftp://x"},
                files=files,
                headers=enroll,
            )
            assert bad.status_code == 422 and "callback_url" in bad.json()["error"]
            queued = client.post(
                "/v1/enrollments/uploads",
                data={"person": "Al_Gore", "callback_url": receiver.url},
                files=files,
                headers=enroll,
            ).json()
            deadline = time.monotonic() + 120
            while not receiver.got and time.monotonic() < deadline:
                time.sleep(0.2)
            assert json.loads(receiver.got[0][1])["batch"] == queued["batch"]
            log = client.get("/v1/webhooks", headers={"Authorization": f"Bearer {keys['admin']}"})
            assert log.json()["total"] == 1 and log.json()["items"][0]["status"] == "delivered"
            assert client.get("/v1/webhooks", headers=enroll).status_code == 403  # the log is the admin's
            assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {keys['admin']}"}).json()["total"] == 1
    if settings.database_url:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    capsys.readouterr()
    assert main(["webhooks", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["batch"], row["status"], row["attempts"]) == (queued["batch"], "delivered", 1)
