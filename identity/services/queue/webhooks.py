"""Completion webhooks of queued enrollments: once every job of a batch queued with a `callback_url` is done,
the worker POSTs the batch's outcomes there.

The body is JSON `{"batch", "counts", "jobs": [{"job_id", "file", "external_id", "outcome", "reason"}]}`,
signed: `X-Identity-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the first of the signing
secrets, named by `X-Identity-Signature-Key: <key id>` (the first 8 hex of the secret's sha256), so a
receiver holding several secrets during a rotation knows which to check. An answer other than 2xx (or
none within api.webhook_timeout_s) is retried after api.webhook_backoff_s, four times longer after each
attempt, up to api.webhook_attempts; then the delivery is `failed`. Each attempt is logged on the row.

Sending runs in its own thread beside the queue loop (run_worker), so a slow receiver never holds a job
back; a delivery is held by the sender that claimed it, so several workers never send one twice at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from identity.app.core import App
from identity.config import Settings
from identity.errors import InvalidArgument
from identity.services.paging import Page, decode_cursor, page_of
from identity.store.sql import jobs as job_rows
from identity.store.sql import webhooks as rows
from identity.store.sql.db import transaction
from identity.store.sql.tables import WebhookDelivery, utcnow

STATES = rows.STATES
SIGNATURE, SIGNATURE_KEY, DELIVERY = "X-Identity-Signature", "X-Identity-Signature-Key", "X-Identity-Delivery"
SECRET_FILE = "webhook_secret"
PER_ROUND = 20  # deliveries one sender claims at a time
MAX_ERROR = 500  # characters of a receiver's error kept in the log
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryRecord:  # a delivery as `identity webhooks list` and GET /v1/webhooks show it
    id: int
    batch: str
    url: str
    status: str  # waiting / pending / delivered / failed / dropped
    attempts: int
    last_status: int | None  # the receiver's HTTP status on the last attempt
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None


def check_callback_url(url: str) -> str:
    """An absolute http(s) URL with a host, or InvalidArgument saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"callback_url {url[:100]!r}: expected an absolute http:// or https:// URL")
    return url


def add_callback(app: App, batch: str, url: str) -> None:
    """Record the batch's completion callback (checked), to be sent once its jobs are done."""
    with transaction(app.sessions) as session:
        rows.add_waiting(session, batch, check_callback_url(url))


def signing_secrets(settings: Settings) -> list[str]:
    """api.webhook_secrets (comma-separated, the first signs), else one generated once in the data dir."""
    configured = [s.strip() for s in (settings.api.webhook_secrets or "").split(",") if s.strip()]
    if configured:
        return configured
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
    return [path.read_text().strip()]


def key_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def signature(secret: str, body: bytes) -> str:
    """The X-Identity-Signature value of `body` (receivers compute it the same way and compare)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def prepare_deliveries(app: App) -> int:
    """Write the payload of each waiting delivery whose batch is done (it becomes pending); how many."""
    now = utcnow()
    with transaction(app.sessions) as session:
        ready = rows.batches_done(session)
        for delivery in ready:
            jobs = job_rows.batch_jobs(session, delivery.batch)
            payload = _payload(delivery.batch, jobs)
            rows.make_pending(delivery, payload, rows.person_ids_of(session, [j.external_id for j in jobs]), now)
    return len(ready)


def send_due(app: App) -> int:
    """Send the deliveries due now, logging each attempt; how many attempts were made."""
    settings = app.settings.api
    signing: str | None = None  # read (or made) only when something is to be sent
    sent = 0
    while True:
        now = utcnow()
        with transaction(app.sessions) as session:
            hold = now + timedelta(seconds=settings.webhook_timeout_s * 2 + 60)
            due = [(d.id, d.url, d.payload, d.attempts) for d in rows.claim_due(session, now, hold, PER_ROUND)]
        for delivery_id, url, payload, attempts in due:
            signing = signing or signing_secrets(app.settings)[0]
            body = json.dumps(payload, separators=(",", ":")).encode()
            http_status, error = _post(url, body, signing, delivery_id, settings.webhook_timeout_s)
            _log(app, delivery_id, attempts + 1, http_status, error)
            sent += 1
        if len(due) < PER_ROUND:
            return sent


def deliver(app: App) -> int:
    """One sender's round: payloads of finished batches written, then the due deliveries sent."""
    prepare_deliveries(app)
    return send_due(app)


def list_deliveries(
    app: App, status: str | None = None, limit: int = 100, cursor: str | None = None
) -> Page[DeliveryRecord]:
    """The delivery log, newest first, a page of `limit` at a time."""
    if status not in (None, *STATES):
        raise InvalidArgument(f"status {status!r}: expected one of {', '.join(STATES)}")
    offset = decode_cursor(cursor)
    with app.sessions() as session:
        found = rows.list_deliveries(session, status, limit + 1, offset)
        return page_of(found, offset, limit, rows.count_deliveries(session, status)).map(_record)


class Sender(threading.Thread):
    """The worker's webhook thread: a round every `poll` seconds, or when nudged (the worker finished jobs);
    `finish` ends it after one last round."""

    def __init__(self, app: App, poll: float) -> None:
        super().__init__(name="identity-webhooks", daemon=True)
        self._app, self._poll = app, poll
        self._nudged, self._finished = threading.Event(), threading.Event()

    def nudge(self) -> None:
        self._nudged.set()

    def finish(self) -> None:
        self._finished.set()
        self._nudged.set()
        self.join()

    def run(self) -> None:
        while True:
            self._nudged.wait(self._poll)
            self._nudged.clear()
            stopping = self._finished.is_set()
            try:
                deliver(self._app)
            except Exception:  # a store down: the queue loop reports it; try again next round
                log.exception("webhook deliveries: round failed")
            if stopping:
                return


def _payload(batch: str, jobs: list[Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    listed = []
    for job in jobs:
        outcome = job.outcome or job.status.value  # cancelled jobs have no outcome
        counts[outcome] = counts.get(outcome, 0) + 1
        listed.append(
            {
                "job_id": job.id,
                "file": job.source_path,
                "external_id": job.external_id,
                "outcome": outcome,
                "reason": job.reason,
            }
        )
    return {"batch": batch, "counts": counts, "jobs": listed}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer (3xx, retried): a signed body is never re-sent elsewhere."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, secret: str, delivery_id: int, timeout: float) -> tuple[int | None, str | None]:
    """(HTTP status, error) of one attempt: error None means delivered (2xx)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "identity-webhooks",
            SIGNATURE: signature(secret, body),
            SIGNATURE_KEY: key_id(secret),
            DELIVERY: str(delivery_id),
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"the receiver answered {exc.code} {exc.reason}"[:MAX_ERROR]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"not delivered: {reason}"[:MAX_ERROR]


def _log(app: App, delivery_id: int, attempts: int, http_status: int | None, error: str | None) -> None:
    settings = app.settings.api
    now = utcnow()
    if error is None:
        status, next_at = rows.DELIVERED, None
    elif attempts >= settings.webhook_attempts:
        status, next_at = rows.FAILED, None
    else:
        status, next_at = rows.PENDING, now + timedelta(seconds=settings.webhook_backoff_s * 4 ** (attempts - 1))
    with transaction(app.sessions) as session:
        rows.record_attempt(session, delivery_id, status, http_status, error, next_at, now)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _record(row: WebhookDelivery) -> DeliveryRecord:
    return DeliveryRecord(
        row.id,
        row.batch,
        row.url,
        row.status,
        row.attempts,
        row.last_status,
        row.last_error,
        _iso(row.next_attempt_at),
        row.created_at.isoformat(),
        _iso(row.delivered_at),
    )
