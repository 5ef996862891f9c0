"""`identity reindex` as jobs in the enrollment queue: kind reindex, one per photo and person and target
model, finished by the queue loop; a stopped or SIGKILLed run resumes without duplicates, and
`identity worker --drain` takes the reindex jobs a stopped run left queued."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from identity.app.core import App, open_deployment
from identity.config import EnrollSettings, Settings
from identity.serialize import to_json
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.models.reindex import reindex
from identity.services.queue.jobs import list_jobs
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.queue.worker import run_worker
from identity.store.sql.tables import Face, FaceStatus, Job, JobStatus, Model
from identity.store.vectors import open_vector_index

OLD = "dlib-resnet@2"


def enrolled_gallery(settings: Settings, root: Path, lfw_dir: Path, people: dict[str, int]) -> None:
    for person, count in people.items():
        (root / person).mkdir(parents=True)
        for image in sorted((lfw_dir / person).iterdir())[:count]:
            shutil.copy(image, root / person / image.name)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, batch, 1)
        assert summary.counts == {"enrolled": sum(people.values())}, summary.counts


@pytest.fixture(params=["sqlite", "postgres"])
def gallery(request, tmp_path: Path, lfw_dir: Path, save_stand_in) -> Settings:
    """3 people x 2 lfw-dev photos enrolled with the default pack, and the stand-in pack saved."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=1, enroll=EnrollSettings(chunk_size=2))
    enrolled_gallery(settings, tmp_path / "photos", lfw_dir, {"Aaron_Peirsol": 2, "Al_Gore": 2, "Alejandro_Toledo": 2})
    save_stand_in(settings.data_dir)
    return settings


def target_state(settings: Settings, model_id: str | None = None) -> dict[str, object]:
    """The target model's rows and vectors, and the reindex jobs."""
    with open_deployment(settings) as dep, dep.app.sessions() as session:
        model = session.scalars(select(Model).where(Model.name == "dlib-resnet-ft")).one()
        faces = session.scalars(select(Face).where(Face.model_id == model.id)).all()
        reindex_jobs = session.scalars(select(Job).where(Job.kind == "reindex")).all()
        enroll_kinds = set(session.scalars(select(Job.kind).where(Job.model_id.is_(None))))
        model_id, dim = model.model_id, model.dim
        pending = session.scalar(select(func.count()).select_from(Face).where(Face.status == FaceStatus.pending))
    with open_vector_index(settings, model_id, dim) as index:
        vectors = sorted(str(face_id) for face_id, _ in index.iter_ids())
    pairs = [(f.image_id, f.person_id) for f in faces]
    return {
        "model_id": model_id,
        "model_row": model.id,
        "faces": len(faces),
        "pending": pending,
        "duplicates": len(pairs) - len(set(pairs)),
        "vectors_match": vectors == sorted(str(f.id) for f in faces if f.status == FaceStatus.indexed),
        "jobs": sorted((j.status.value, j.outcome) for j in reindex_jobs),
        "job_targets": {j.model_id for j in reindex_jobs},
        "enroll_kinds": enroll_kinds,
    }


def test_reindex_queues_reindex_jobs_and_the_queue_loop_finishes_them(gallery) -> None:
    settings = gallery
    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")
    assert summary.switched and (summary.faces, summary.reindexed, summary.failed) == (6, 6, [])
    state = target_state(settings)
    assert state["jobs"] == [("done", "reindexed")] * 6 and state["job_targets"] == {state["model_row"]}
    assert state["enroll_kinds"] == {"enroll"}  # the enrollment jobs are untouched
    assert (state["faces"], state["pending"], state["duplicates"], state["vectors_match"]) == (6, 0, 0, True)
    with open_deployment(settings) as dep:
        listed = list_jobs(dep.app, state="reindexed").items
    assert len(listed) == 6 and all(Path(j.source_path).is_file() for j in listed)
    assert {j.external_id for j in listed} == {"Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"}

    with App.open(settings) as app:
        again = reindex(app, OLD)  # rollback: the old model holds every face, no job is queued
    assert again.switched and (again.skipped_already_done, again.reindexed) == (6, 0)
    assert len(target_state(settings)["jobs"]) == 6


def test_a_reindex_job_the_database_refuses_fails_alone(gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity.errors import IdentityError
    from identity.services.models import reindex as reindex_service
    from identity.store.sql.tables import Person

    settings = gallery
    with open_deployment(settings) as dep, dep.app.sessions() as session:
        gore = session.scalars(select(Person.id).where(Person.external_id == "Al_Gore")).one()
    real = reindex_service.face_row

    def face_row(face, person_id, image_id, model_row_id):  # one person's rows are refused
        if person_id == gore:
            raise IdentityError("injected: refused")
        return real(face, person_id, image_id, model_row_id)

    monkeypatch.setattr(reindex_service, "face_row", face_row)
    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")
    assert (summary.reindexed, len(summary.failed), summary.switched) == (4, 2, False)  # no switch with faces missing
    assert {f["reason"] for f in to_json(summary)["failed"]} == {"injected: refused"}
    state = target_state(settings)
    assert state["jobs"] == [("done", "reindexed")] * 4 + [("failed", "failed")] * 2
    assert (state["faces"], state["pending"], state["vectors_match"]) == (4, 0, True)  # the refused job left no row

    monkeypatch.undo()
    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")  # a re-run retries the failed photos
    assert summary.switched and (summary.reindexed, summary.failed) == (2, [])


def test_worker_drain_takes_the_reindex_jobs_a_stopped_reindex_left(gallery, upsert_stopper) -> None:
    settings = gallery
    upsert_stopper.arm(1)  # the first chunk is stored, the second stops between its rows and vectors
    with pytest.raises(upsert_stopper.Stop):
        with App.open(settings) as app:
            reindex(app, "dlib-resnet-ft")
    upsert_stopper.undo()
    stopped = target_state(settings)
    assert stopped["jobs"] == [("done", "reindexed")] * 2 + [("queued", None)] * 4
    assert stopped["pending"] == 2  # the second chunk's rows wait for their vectors

    with App.open(settings) as app:
        summary = run_worker(app, workers=1, drain=True, poll=0.5)
    assert summary.counts == {"reindexed": 4}
    state = target_state(settings)
    assert state["jobs"] == [("done", "reindexed")] * 6
    assert (state["faces"], state["pending"], state["duplicates"], state["vectors_match"]) == (6, 0, 0, True)
    with open_deployment(settings) as dep:
        assert dep.model.model_id == OLD  # the worker re-embeds; switching stays reindex's
    with App.open(settings) as app:
        done = reindex(app, "dlib-resnet-ft")
    assert done.switched and (done.skipped_already_done, done.reindexed, done.failed) == (6, 0, [])
    assert len(target_state(settings)["jobs"]) == 6


def test_reindex_sigkilled_midway_resumes_without_duplicates(tmp_path: Path, lfw_dir: Path, save_stand_in) -> None:
    env = {
        **os.environ,
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "IDENTITY_WORKERS": "1",
        "IDENTITY_ENROLL__CHUNK_SIZE": "1",
    }
    for key in ("IDENTITY_DATABASE_URL", "IDENTITY_QDRANT_URL", "IDENTITY_MODEL"):
        env.pop(key, None)
    settings = Settings.load(env=env)
    enrolled_gallery(
        settings,
        tmp_path / "photos",
        lfw_dir,
        {"Aaron_Peirsol": 4, "Al_Gore": 4, "Alejandro_Toledo": 4, "Amelie_Mauresmo": 4},
    )
    save_stand_in(settings.data_dir)
    cmd = [sys.executable, "-m", "identity_cli.main", "reindex", "--model", "dlib-resnet-ft", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(tmp_path / "data" / "identity.db") as conn:
                done = conn.execute("select count(*) from jobs where kind = 'reindex' and status = 'done'").fetchone()[
                    0
                ]
        except sqlite3.Error:
            continue
        if done >= 2:
            break
    assert proc.poll() is None, "reindex finished before it could be killed; make the set bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = target_state(settings)
    assert 2 <= killed["jobs"].count(("done", "reindexed")) < 16
    with open_deployment(settings) as dep:
        assert dep.model.model_id == OLD

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    state = target_state(settings)
    assert state["jobs"] == [("done", "reindexed")] * 16  # the killed run's jobs adopted, none queued twice
    assert (state["faces"], state["pending"], state["duplicates"], state["vectors_match"]) == (16, 0, 0, True)
    with open_deployment(settings) as dep:
        assert dep.model.model_id == state["model_id"]
        assert {j.status for j in list_jobs(dep.app).items} == {JobStatus.done.value}


def test_reindex_waits_for_jobs_another_worker_holds_and_counts_their_outcomes(gallery, monkeypatch) -> None:
    """A worker elsewhere claims one job of the reindex's batch and fails it: the run waits for it and
    does not switch."""
    import threading

    import identity.services.models.reindex as reindex_service
    from identity.store.sql import jobs
    from identity.store.sql.db import transaction

    settings = gallery
    real_queue_jobs, taken = reindex_service.queue_jobs, []

    def queue_then_taken_elsewhere(app, specs, batch=None):
        batch, queued = real_queue_jobs(app, specs, batch)
        with transaction(app.sessions) as session:
            [job] = jobs.claim(session, "elsewhere:1", 1, lease_seconds=30, batch=batch, kind="reindex")
            taken.append((job.id, job.attributes["faces"][0]["id"], job.source_path))

        def finish_later() -> None:
            time.sleep(1.0)
            with transaction(app.sessions) as session:
                jobs.finish(session, taken[0][0], "failed", "the other worker's reason")

        threading.Thread(target=finish_later, daemon=True).start()
        return batch, queued

    monkeypatch.setattr(reindex_service, "queue_jobs", queue_then_taken_elsewhere)
    with App.open(settings) as app:
        summary = reindex(app, "dlib-resnet-ft")
    [(job_id, face_id, path)] = taken
    assert not summary.switched and (summary.faces, summary.reindexed) == (6, 5)
    assert [(f.face_id, f.path, f.reason) for f in summary.failed] == [(face_id, path, "the other worker's reason")]
