"""Erasing a person as a durable intent: recorded first, applied step by step, marked complete last.

`erase_person` first commits a pending_erasures row whose plan holds what finishing needs
(the person's uuid and external id, face ids per model, upload paths, image digests, the
kept unknown faces that are theirs), read before any store changes. The steps then run in
order, each idempotent and recorded as done when it is:

1. sql: the person's rows deleted and redacted (identity.store.sql.erasure), their kept
   unknown faces and cluster members deleted, searches of their photos redacted, and the
   audit event written, in one transaction;
2. vectors: in every model's collections (faces, templates, unknown) the points deleted,
   then each collection purged (its files rebuilt without them);
3. uploads: the copies the HTTP API stored of their photos deleted;
4. forgotten: the plan emptied, leaving only the keyed tokens; SQLite's log checkpointed;
5. complete.

A failure stops at its step with ErasurePending (exit 4) naming how to finish: the next
`person delete` of the same person, `doctor --repair` or a worker round (finish_pending)
runs the remaining steps. Enrolling the external id again is refused until then
(identity.services.queue.loop.queue_jobs).

A kept unknown face is the person's when its photo is one of theirs, or when its vector is
at least the model's 1:1 threshold (FAR 1e-3) from the person's template: a search that
returned them as unknown kept their face.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment, model_collections
from identity.errors import ErasurePending, IdentityError, NotFound
from identity.serialize import json_field, to_json
from identity.services.enrollment.uploads import uploads_dir
from identity.services.search.thresholds import pairwise_threshold
from identity.store.sql.audit_events import add_audit_details, latest_audit_event, record_audit_event
from identity.store.sql.db import Session, flush_deleted, transaction
from identity.store.sql.erasure import erase_image_traces, erase_person_rows, person_images, person_tokens
from identity.store.sql.faces import face_keys_of_person
from identity.store.sql.idempotency import forget_person_answers
from identity.store.sql.pending_erasures import (
    COMPLETE,
    count_open,
    open_erasure,
    open_erasure_ids,
    record_pending,
    set_step,
)
from identity.store.sql.persons import find_person, person_with_id
from identity.store.sql.tables import PendingErasure, Person
from identity.store.sql.unknown_faces import unknown_face_keys
from identity.store.sql.webhooks import drop_person_webhooks
from identity.store.vectors import FaceIndex
from identity.store.vectors.base import UNKNOWN, PurgeResult

Plan = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceNamed:
    """A face deletion's subject when it was already done: the id asked for."""

    face_id: str


@dataclass(frozen=True)
class FaceErased(FaceNamed):
    person: str | None  # the external id it was filed under (None: a person since erased)


@dataclass(frozen=True)
class PersonErased:
    deleted: str  # external id
    person_id: str
    faces_erased: int  # photos


@dataclass(frozen=True, kw_only=True)
class CollectionPurge:
    """One collection's part of an erasure: the points deleted (faces or kept unknown faces), then its purge."""

    face_rows: int | None = field(default=None, metadata=json_field(omit_if_none=True))
    unknown_faces: int | None = field(default=None, metadata=json_field(omit_if_none=True))
    purge: PurgeResult = field(metadata=json_field(flatten=True))


@dataclass(frozen=True)
class Removed:
    """What an erasure removed, per store (a resumed erasure reports the steps it ran)."""

    sql: dict[str, Any] | None = field(default=None, metadata=json_field(omit_if_none=True))  # rows per table, the file
    vectors: dict[str, CollectionPurge] | None = field(default=None, metadata=json_field(omit_if_none=True))
    uploaded_files: int | None = field(default=None, metadata=json_field(omit_if_falsy=True))


@dataclass(frozen=True)
class Erasure:
    """What a face or person deletion removed; or, for one already done, when and by whom.

    Its two JSON shapes: {subject..., removed, [completed_pending]} and {already_deleted, subject..., deleted_at, by}.
    """

    already_deleted: bool = field(default=False, metadata=json_field(omit_if_falsy=True))
    subject: FaceNamed | PersonErased | None = field(default=None, metadata=json_field(flatten=True))  # None: unknown
    removed: Removed | None = field(default=None, metadata=json_field(omit_if_none=True))
    deleted_at: str | None = field(default=None, metadata=json_field(omit_if_none=True))
    by: str | None = field(default=None, metadata=json_field(omit_if_none=True))
    # this call finished an erasure an earlier one left pending
    completed_pending: bool = field(default=False, metadata=json_field(omit_if_falsy=True))


def erase_person(app: App, ref: str, actor: str | None = None) -> Erasure:
    """Erase a person from every store, or finish their pending erasure; an audit event remains, with keyed
    tokens instead of their ids."""
    dep = app.deployment(write=True)
    with transaction(app.sessions) as session:
        person = find_person(session, ref)
        if person is not None:  # two deletes at once (Postgres): the second waits here, then finds the first's record
            session.refresh(person, with_for_update=True)
        pending = open_erasure(session, ref)
        if pending is not None:
            erasure_id, resumed = pending.id, True
        elif person is None:
            return _already_erased(session, ref)
        else:
            erasure_id, resumed = _record(dep, session, person, actor).id, False
    return _finish(dep, erasure_id, ref, resumed)


def count_pending(app: App) -> int:
    with app.sessions() as session:
        return count_open(session)


def finish_pending(app: App) -> dict[str, int]:
    """Finish every erasure left pending (doctor --repair, each worker round); ErasurePending at the first
    that fails again."""
    dep = app.deployment(write=True)
    with app.sessions() as session:
        pending = open_erasure_ids(session)
    for erasure_id in pending:
        _finish(dep, erasure_id, None, True)
    return {"erasures_completed": len(pending)} if pending else {}


def retry_pending(app: App) -> None:
    """Finish erasures left pending, for loops that come round again (worker rounds, the server's background
    work): one that fails again stays pending for the next round (doctor reports it), and the loop goes on."""
    if not count_pending(app):
        return
    try:
        finish_pending(app)
    except ErasurePending as exc:  # logged without the message: it names the person and file paths
        kind = str(exc.details.get("reason", "")).partition(":")[0]
        log.warning(
            "a pending erasure failed again at its %s step (%s): it stays pending for the next round "
            "(identity doctor lists it)",
            exc.details.get("step"),
            kind,
        )


def erase_uploads(app: App, paths: list[str]) -> dict[str, int]:
    """Delete the copies of erased photos that the HTTP API stored (uploads/ under the data directory);
    files elsewhere are the organization's own and stay. Reported only where there were some."""
    root = uploads_dir(app.settings).resolve()
    erased = 0
    for path in map(Path, paths):
        if path.resolve().is_relative_to(root) and path.is_file():
            path.unlink()
            erased += 1
    return {"uploaded_files": erased} if erased else {}


def _record(dep: Deployment, session: Session, person: Person, actor: str | None) -> PendingErasure:
    """The pending erasure with its plan, read before anything changes (the template included: the
    unknown faces that match it are found now, while it exists)."""
    keys = face_keys_of_person(session, person.id)
    faces: dict[str, list[str]] = {}
    for row in keys:
        faces.setdefault(str(row.model_id), []).append(str(row.id))
    images = person_images(session, person)
    unknown, searched = _unknown_of(dep, session, person.id, {sha for sha, _ in images})
    plan = {
        "external_id": person.external_id,
        "person_id": str(person.id),
        "photos": len({row.image_id for row in keys}),
        "faces": faces,
        "uploads": sorted({path for _, path in images if path}),
        "image_sha256": sorted({sha for sha, _ in images} | searched),
        "unknown": unknown,
    }
    subject, by_id = person_tokens(session, person.external_id, person.id)
    return record_pending(session, subject, by_id or "", plan, resolve_actor(actor))


def _unknown_of(
    dep: Deployment, session: Session, person_id: uuid.UUID, digests: set[str]
) -> tuple[dict[str, list[str]], set[str]]:
    """The kept unknown faces that are the person's, by model row id: same photo, or close to their template
    (the active model's; another model's kept faces are matched by photo only, its pack not loaded here);
    and the digests of their photos (searched photos of the person: their log entries are redacted too)."""
    kept = unknown_face_keys(session)
    found = {face_id: model for face_id, model, sha in kept if sha in digests}
    active = [face_id for face_id, model, _ in kept if model == dep.model.id]
    template = dep.templates.vectors([person_id]).get(person_id) if active else None
    if template is not None:
        threshold = pairwise_threshold(dep.model, dep.pipeline)
        unit = template / np.linalg.norm(template)
        for face_id, vector in dep.unknown_faces().vectors(active).items():
            if float(np.dot(unit, vector / np.linalg.norm(vector))) >= threshold:
                found[face_id] = dep.model.id
    grouped: dict[str, list[str]] = {}
    for face_id, model in found.items():
        grouped.setdefault(str(model), []).append(str(face_id))
    return grouped, {sha for face_id, _, sha in kept if face_id in found}


def _finish(dep: Deployment, erasure_id: int, ref: str | None, resumed: bool) -> Erasure:
    """Run the steps not yet done, in order; a failure leaves the erasure pending and says how to finish it."""
    with dep.app.sessions() as session:
        row = session.get_one(PendingErasure, erasure_id)
        plan, done = dict(row.plan or {}), row.step
    steps: list[tuple[str, Callable[[Deployment, int, Plan], dict[str, Any]]]] = [
        ("sql", _apply_sql),
        ("vectors", _apply_vectors),
        ("uploads", _apply_uploads),
        ("forgotten", _forget),
        (COMPLETE, _complete),
    ]
    order = ["recorded", *(name for name, _ in steps)]
    removed: dict[str, Any] = {}
    for name, step in steps:
        if order.index(name) <= order.index(done):
            continue
        try:
            removed.update(step(dep, erasure_id, plan))
        except IdentityError as exc:
            raise _pending(ref or plan.get("external_id"), name, exc.message) from exc
        except Exception as exc:  # a full disk, a permission, the engine: all leave the erasure pending
            raise _pending(ref or plan.get("external_id"), name, f"{type(exc).__name__}: {exc}") from exc
    if "database" in removed:  # reported with the SQL store, as before erasure was durable
        removed.setdefault("sql", {})["database"] = removed.pop("database")
    subject = PersonErased(plan["external_id"], plan["person_id"], plan["photos"]) if "external_id" in plan else None
    return Erasure(subject=subject, removed=Removed(**removed), completed_pending=resumed)


def _pending(ref: str | None, step: str, reason: str) -> ErasurePending:
    again = f"`identity person delete {ref}`" if ref else "`identity person delete ID`"
    who = f"of {ref} " if ref else ""
    return ErasurePending(
        f"the erasure {who}is pending: its {step} step failed ({reason.splitlines()[0]}); "
        f"run {again} or `identity doctor --repair` to finish it",
        step=step,
        reason=reason,
    )


def _apply_sql(dep: Deployment, erasure_id: int, plan: Plan) -> dict[str, Any]:
    with transaction(dep.app.sessions) as session:
        person = person_with_id(session, uuid.UUID(plan["person_id"]))
        row = session.get_one(PendingErasure, erasure_id)
        paths: list[str] = []
        # answers kept for Idempotency-Key retries and completion webhooks not yet sent that name them (first:
        # the person row's FK would take the linked answers silently)
        named = forget_person_answers(session, uuid.UUID(plan["person_id"]), plan["external_id"])
        named.update(drop_person_webhooks(session, uuid.UUID(plan["person_id"])))
        sql = erase_person_rows(session, person, paths) if person is not None else {}
        sql.update(named)
        unknown = [uuid.UUID(i) for ids in plan["unknown"].values() for i in ids]
        sql.update(erase_image_traces(session, unknown, plan["image_sha256"]))
        _, token = person_tokens(session, plan["external_id"], uuid.UUID(plan["person_id"]))
        plan["audit_event"] = record_audit_event(
            session,
            row.actor,
            "delete_person",
            subject=row.subject_token,
            details={"person": token, "faces_erased": plan["photos"], "sql": sql},
        )
        plan["uploads"] = sorted({*plan["uploads"], *paths})
        row.plan = dict(plan)  # a new dict, so the JSON column sees the change
        set_step(session, erasure_id, "sql")
    return {"sql": sql}


def _apply_vectors(dep: Deployment, erasure_id: int, plan: Plan) -> dict[str, Any]:
    """Delete the person's points in each model's collections (the active one always, in case a vector
    outlived its row), then purge each: a template is a mean of what was erased."""
    person_id = uuid.UUID(plan["person_id"])
    models = {dep.model.id, *map(int, plan["faces"]), *map(int, plan["unknown"])}
    report: dict[str, CollectionPurge] = {}
    with model_collections(dep, models) as stores:
        for model_id, store in stores.items():
            face_ids = [uuid.UUID(i) for i in plan["faces"].get(str(model_id), [])]
            store.faces.delete(face_ids)
            store.faces.delete_person(person_id)
            store.templates.delete([person_id])
            report[store.faces.collection] = CollectionPurge(face_rows=len(face_ids), purge=store.faces.purge())
            report[store.templates.collection] = CollectionPurge(purge=store.templates.purge())
            unknown = [uuid.UUID(i) for i in plan["unknown"].get(str(model_id), [])]
            if unknown:
                report.update(_purge_unknown(dep, model_id, store.faces, unknown))
    with transaction(dep.app.sessions) as session:
        if plan.get("audit_event") is not None:  # the event says the vectors are gone too
            add_audit_details(session, plan["audit_event"], {"vectors": to_json(report)})
        set_step(session, erasure_id, "vectors")
    return {"vectors": report}


def _purge_unknown(
    dep: Deployment, model_id: int, faces: FaceIndex, ids: list[uuid.UUID]
) -> dict[str, CollectionPurge]:
    """Delete and purge kept unknown faces: the deployment's held collection for its model, else one opened here."""
    if model_id == dep.model.id:
        index = dep.unknown_faces()
        index.delete(ids)
        return {index.collection: CollectionPurge(unknown_faces=len(ids), purge=index.purge())}
    with faces.sibling(UNKNOWN) as other:
        other.delete(ids)
        return {other.collection: CollectionPurge(unknown_faces=len(ids), purge=other.purge())}


def _apply_uploads(dep: Deployment, erasure_id: int, plan: Plan) -> dict[str, Any]:
    erased = erase_uploads(dep.app, plan["uploads"])
    with transaction(dep.app.sessions) as session:
        set_step(session, erasure_id, "uploads")
    return erased


def _forget(dep: Deployment, erasure_id: int, plan: Plan) -> dict[str, Any]:
    """Empty the plan (ids, paths, digests), so only the keyed tokens stay (out of SQLite's log at completion)."""
    with transaction(dep.app.sessions) as session:
        set_step(session, erasure_id, "forgotten", forget_plan=True)
    return {}


def _complete(dep: Deployment, erasure_id: int, plan: Plan) -> dict[str, Any]:
    """Mark the erasure complete, then checkpoint SQLite's log: the deleted rows and the plan leave its files."""
    with transaction(dep.app.sessions) as session:
        set_step(session, erasure_id, COMPLETE)
    return {"database": flush_deleted(dep.app.engine)}


def _already_erased(session: Session, ref: str) -> Erasure:
    """Erasing twice is harmless: the second call finds the first one's event by the keyed token of `ref`."""
    try:
        parsed: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        parsed = None
    by_external_id, by_id = person_tokens(session, ref, parsed)  # by_id: None when ref is no uuid
    # subject == ref: events written before erasure kept tokens instead of ids
    event = latest_audit_event(session, "delete_person", [by_external_id, ref], person_id=parsed, mentioning=by_id)
    if event is None:
        raise NotFound(f"no person with external id or uuid {ref!r}")
    return Erasure(already_deleted=True, deleted_at=event.created_at.isoformat(), by=event.actor)
