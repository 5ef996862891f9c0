"""The `Idempotency-Key` header of the POSTs that create persons and enrollments (not /v1/keys: a key's
secret is never stored, so its answer cannot be given twice). identity.services.access.idempotency decides.

    with idempotent(ctx, key, request, idempotency_key, digest) as attempt:
        if attempt.replay:
            return attempt.replay
        ...act...
        return attempt.answer(body, person_id)

A replay carries the header `Idempotent-Replayed: true`; an error raised inside releases the key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from identity.api.context import ApiContext
from identity.services.access.idempotency import MAX_KEY, Replay, Started, abandon, begin, finish, request_digest
from identity.services.access.keys import KeyRecord

IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    max_length=MAX_KEY,
    description="a retry with the same key (same API key, same route, same body) within "
    "IDENTITY_API__IDEMPOTENCY_HOURS gets the first answer back, with `Idempotent-Replayed: true`",
)
REPLAYED = "Idempotent-Replayed"


def json_digest(body: BaseModel) -> str:
    """A JSON body's digest: of its parsed fields, so key order and spacing do not matter."""
    return request_digest([json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()])


def upload_digest(fields: Iterable[str], files: Iterable[Path]) -> str:
    """A multipart body's digest: its form fields, then each uploaded file's bytes, in order."""
    return request_digest([*(field.encode() for field in fields), *(path.read_bytes() for path in files)])


class Attempt:
    def __init__(self, ctx: ApiContext, started: Started | None, replay: Replay | None, model: type[BaseModel]):
        self._ctx, self._started, self._model = ctx, started, model
        self.replay = None if replay is None else _replayed(replay)

    def answer(self, body: dict[str, Any], status_code: int, person_id: uuid.UUID | None = None) -> Any:
        """The route's answer, kept for retries (as the client gets it: through the route's response model)."""
        if self._started is None:
            return body
        sent = jsonable_encoder(self._model.model_validate(body))
        finish(self._ctx.core, self._started, status_code, sent, person_id)
        self._started = None
        return JSONResponse(sent, status_code=status_code)

    def release(self) -> None:
        """No answer to keep (the request failed, or answered without `answer`): a retry acts again."""
        if self._started is not None:
            abandon(self._ctx.core, self._started)
            self._started = None


@contextmanager
def idempotent(
    ctx: ApiContext,
    key: KeyRecord,
    request: Request,
    idempotency_key: str | None,
    digest: str,
    model: type[BaseModel],
) -> Iterator[Attempt]:
    """The request's attempt: a replay of the first answer, or the request to act (no header: always)."""
    if idempotency_key is None:
        yield Attempt(ctx, None, None, model)
        return
    held = begin(ctx.core, key.key_id, f"POST {request.url.path}", idempotency_key, digest)
    attempt = Attempt(
        ctx, held if isinstance(held, Started) else None, held if isinstance(held, Replay) else None, model
    )
    try:
        yield attempt
    finally:
        attempt.release()


def _replayed(replay: Replay) -> JSONResponse:
    return JSONResponse(replay.body, status_code=replay.status_code, headers={REPLAYED: "true"})
