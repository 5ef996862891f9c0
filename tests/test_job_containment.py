"""One job cannot jam the queue: a job whose input is wrong fails alone, at any stage,
while a store that is down stops the run; jobs can be cancelled; doctor sees stuck jobs."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from identity.app.core import open_deployment
from identity.config import Settings
from identity.errors import IdentityError, InvalidVector, ModelError, StoreUnavailable
from identity.serialize import to_json
from identity.services.enrollment import writer as enroll_service
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.maintenance.doctor import STUCK_LEASES, diagnose, repair
from identity.services.queue.loop import process_queue, queue_jobs
from identity.store.sql import jobs
from identity.store.sql.db import transaction
from identity.store.sql.tables import Face, Job, JobStatus, utcnow

PEOPLE = ["Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"]
TARGET = "Al_Gore"  # the job each injected fault hits


class Injected(IdentityError):
    """A fault a test raises inside our own code: the job's fault, by its class."""


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1)


def one_photo_each(root: Path, lfw_dir: Path, people: dict[str, str]) -> Path:
    """root/FOLDER/photo for each folder -> lfw person whose first photo it holds."""
    for folder, person in people.items():
        (root / folder).mkdir(parents=True)
        shutil.copy(sorted((lfw_dir / person).iterdir())[0], root / folder)
    return root


def specs(root: Path) -> list[jobs.JobSpec]:
    return [jobs.JobSpec(str(p), p.parent.name) for p in sorted(root.glob("*/*.jpg"))]


def drain(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """Process every queued job, as `identity worker --drain` does."""
    with open_deployment(settings) as dep:
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, None, 1)
    return {r.external_id: (r.outcome, r.reason) for r in summary.results}


def job_rows(settings: Settings) -> dict[str, Job]:
    with open_deployment(settings) as dep, dep.app.sessions() as s:
        return {j.external_id: j for j in s.scalars(select(Job))}


def store_state(settings: Settings) -> tuple[int, int, bool]:
    with open_deployment(settings) as dep:
        with dep.app.sessions() as s:
            faces = s.scalar(select(func.count()).select_from(Face))
        return faces, dep.index.count(), diagnose(dep.app).clean


# --- the repro, through the CLI -------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def cli_env(request, clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "postgres":
        monkeypatch.setenv("IDENTITY_DATABASE_URL", request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("IDENTITY_WORKERS", "1")


def test_folder_named_with_a_persons_uuid_fails_alone(cli_env, capsys, tmp_path: Path, lfw_dir: Path) -> None:
    from identity_cli.main import main

    assert main(["enroll", str(one_photo_each(tmp_path / "first", lfw_dir, {"Al_Gore": "Al_Gore"}))]) == 0
    capsys.readouterr()
    assert main(["person", "show", "Al_Gore", "--json"]) == 0
    gore = json.loads(capsys.readouterr().out)["id"]

    # enroll: the bad job fails with the reason, the other enrolls, one report row each, exit 5
    x = one_photo_each(tmp_path / "x", lfw_dir, {gore: "Aaron_Peirsol", "Zed": "Alejandro_Toledo"})
    report = tmp_path / "report.csv"
    assert main(["enroll", str(x), "--report", str(report), "--json"]) == 5
    rows = {r["external_id"]: r for r in csv.DictReader(report.open())}
    assert rows["Zed"]["outcome"] == "enrolled"
    assert rows[gore]["outcome"] == "failed" and "uuid of person 'Al_Gore'" in rows[gore]["reason"]
    capsys.readouterr()
    assert main(["jobs", "list", "--state", "failed", "--json"]) == 0
    [failed] = json.loads(capsys.readouterr().out)
    assert (failed["external_id"], failed["status"], failed["attempts"]) == (gore, "failed", 1)

    # queued beside an unrelated job, the same bad job no longer stops `worker --drain`
    y = one_photo_each(tmp_path / "y", lfw_dir, {gore: "AJ_Cook", "Yan": "Aaron_Eckhart"})
    assert main(["enroll", str(y), "--queue-only"]) == 0
    capsys.readouterr()
    assert main(["worker", "--drain", "--json", "--workers", "1"]) == 5
    assert json.loads(capsys.readouterr().out)["counts"] == {"enrolled": 1, "failed": 1}
    assert main(["worker", "--drain", "--json", "--workers", "1"]) == 0  # nothing left
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True


# --- a fault injected in each stage fails only the job it hits --------------------------


def _fail_target_digest(monkeypatch: pytest.MonkeyPatch, dep) -> None:
    real = enroll_service.file_digest
    monkeypatch.setattr(
        enroll_service,
        "file_digest",
        lambda path: _raise(Injected("injected: digest")) if TARGET in path else real(path),
    )


def _fail_target_detection(monkeypatch: pytest.MonkeyPatch, dep) -> None:
    from identity.faces.pipeline import FacePipeline

    real = FacePipeline.process

    def process(self, images):  # a detector that chokes on one image of the batch
        if any(TARGET in image.path for image in images):
            raise RuntimeError("injected: detector")
        return real(self, images)

    monkeypatch.setattr(FacePipeline, "process", process)


def _fail_target_decision(monkeypatch: pytest.MonkeyPatch, dep) -> None:
    real = enroll_service.face_row
    target = _person_id(dep, TARGET)

    def face_row(face, person_id, image_id, model_row_id):  # after the job's image row was added
        if person_id == target:
            raise Injected("injected: decision")
        return real(face, person_id, image_id, model_row_id)

    monkeypatch.setattr(enroll_service, "face_row", face_row)


def _fail_target_upsert(monkeypatch: pytest.MonkeyPatch, dep) -> None:
    real = dep.index.upsert
    target = _person_id(dep, TARGET)

    def upsert(points):  # the index refuses one job's vector
        if any(p.person_id == target for p in points):
            raise InvalidVector("injected: vector refused")
        real(points)

    monkeypatch.setattr(dep.index, "upsert", upsert)


def _fail_target_finish(monkeypatch: pytest.MonkeyPatch, dep) -> None:
    real = jobs.finish

    def finish(session, job_id, outcome, reason=None, image_id=None):  # recording its enrolment fails
        if outcome == "enrolled" and session.get(Job, job_id).external_id == TARGET:
            raise Injected("injected: finish")
        real(session, job_id, outcome, reason, image_id)

    monkeypatch.setattr(jobs, "finish", finish)


def _raise(exc: Exception):
    raise exc


def _person_id(dep, external_id: str):
    from identity.store.sql.persons import get_or_create_person

    with transaction(dep.app.sessions) as s:
        return get_or_create_person(s, external_id)[0].id


STAGES = {
    "settle": (_fail_target_digest, "injected: digest"),
    "detect": (_fail_target_detection, "processing failed: RuntimeError: injected: detector"),
    "decide": (_fail_target_decision, "injected: decision"),
    "upsert": (_fail_target_upsert, "the vector store refused it: injected: vector refused"),
    "finish": (_fail_target_finish, "could not record the result: injected: finish"),
}


# The stages that write SQL run on both databases; reading a file and detecting faces on SQLite only.
STAGE_CASES = [
    pytest.param(stage, db, id=f"{db}-{stage}")
    for stage in STAGES
    for db in ("sqlite", "postgres")
    if db == "sqlite" or stage in ("decide", "upsert", "finish")
]


@pytest.mark.parametrize("stage, db", STAGE_CASES)
def test_a_fault_in_any_stage_fails_only_its_job(
    stage: str, db: str, request, tmp_path: Path, lfw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        workers=1,
        database_url=request.getfixturevalue("postgres_url") if db == "postgres" else None,
    )
    inject, reason = STAGES[stage]
    root = one_photo_each(tmp_path / "photos", lfw_dir, {p: p for p in PEOPLE})
    with open_deployment(settings) as dep:
        inject(monkeypatch, dep)
        batch, _ = queue_jobs(dep.app, specs(root))
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, batch, 1)
    monkeypatch.undo()
    outcomes = {r.external_id: (r.outcome, r.reason) for r in summary.results}
    assert outcomes == {
        "Aaron_Peirsol": ("enrolled", None),
        "Alejandro_Toledo": ("enrolled", None),
        TARGET: ("failed", reason),
    }
    target = job_rows(settings)[TARGET]
    assert (target.status, target.attempts, target.reason) == (JobStatus.failed, 1, reason)
    assert store_state(settings) == (2, 2, True)  # nothing of the failed job is left half-written
    if stage in ("upsert", "finish"):  # its vectors were written, then undone: retried, it goes through
        with open_deployment(settings) as dep, transaction(dep.app.sessions) as s:
            assert jobs.retry(s) == 1
        assert drain(settings)[TARGET][0] == "enrolled"
        assert store_state(settings) == (3, 3, True)


@pytest.mark.parametrize("stage", ["claim", "model", "upsert"])
def test_a_fault_not_of_the_jobs_stops_the_run_and_hands_jobs_back(
    stage: str, tmp_path: Path, lfw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from identity.faces.pipeline import FacePipeline

    settings = Settings(data_dir=tmp_path / "data", workers=1)
    root = one_photo_each(tmp_path / "photos", lfw_dir, {p: p for p in PEOPLE})
    fault = ModelError("injected: weights unreadable") if stage == "model" else StoreUnavailable("injected: store down")
    with open_deployment(settings) as dep:
        if stage == "claim":
            monkeypatch.setattr(jobs, "claim", lambda *a, **k: _raise(fault))
        elif stage == "model":
            monkeypatch.setattr(FacePipeline, "process", lambda self, images: _raise(fault))
        else:
            monkeypatch.setattr(dep.index, "upsert", lambda points: _raise(fault))
        batch, _ = queue_jobs(dep.app, specs(root))
        with pytest.raises(type(fault)):
            writer = EnrollmentWriter(dep)
            process_queue(dep.app, writer, batch, 1)
    monkeypatch.undo()
    assert {(j.status, j.attempts) for j in job_rows(settings).values()} == {(JobStatus.queued, 0)}
    assert sorted(o for o, _ in drain(settings).values()) == ["enrolled"] * 3  # resumed once the fault is gone
    assert store_state(settings) == (3, 3, True)


# --- cancel ------------------------------------------------------------------------------


def test_cancel_with_force_discards_what_the_worker_wrote(
    settings: Settings, tmp_path: Path, lfw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = one_photo_each(tmp_path / "photos", lfw_dir, {p: p for p in PEOPLE})
    with open_deployment(settings) as dep:
        real = dep.index.upsert

        def upsert_while_cancelled(points):  # `jobs cancel --force` lands between the writes
            real(points)
            with transaction(dep.app.sessions) as s:
                (target,) = s.scalars(select(Job.id).where(Job.external_id == TARGET))
                assert jobs.cancel(s, [target]).refused_live == [target]  # its lease is live
                assert jobs.cancel(s, [target], force=True).cancelled == [target]

        monkeypatch.setattr(dep.index, "upsert", upsert_while_cancelled)
        batch, _ = queue_jobs(dep.app, specs(root))
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, batch, 1)
    monkeypatch.undo()
    assert {r.external_id: r.outcome for r in summary.results} == {
        "Aaron_Peirsol": "enrolled",
        "Alejandro_Toledo": "enrolled",
        TARGET: "cancelled",
    }
    assert job_rows(settings)[TARGET].status == JobStatus.cancelled
    assert store_state(settings) == (2, 2, True)


def test_jobs_cancel_command_by_id_state_and_batch(clean_env, capsys) -> None:
    from identity.app.core import App
    from identity.store.sql.migrate import upgrade
    from identity_cli.main import main

    with App.open(Settings.load()) as app:
        upgrade(app.engine)
        with transaction(app.sessions) as s:
            jobs.enqueue(s, "b1", [jobs.JobSpec(f"/img/{i}.jpg", f"P{i}") for i in range(4)])
            jobs.enqueue(s, "b2", [jobs.JobSpec(f"/img/{i}.jpg", f"Q{i}") for i in range(3)])
            first, second = jobs.claim(s, "w", 2, lease_seconds=600, batch="b1")  # running, live leases
            jobs.finish(s, first.id, "failed", "empty file")
            jobs.finish(s, second.id, "enrolled")
        with app.sessions() as s:
            ids = {j.external_id: j.id for j in s.scalars(select(Job))}

    def cancel(*args: str) -> tuple[int, dict]:
        code = main(["jobs", "cancel", *args, "--json"])
        return code, json.loads(capsys.readouterr().out)

    assert cancel(str(ids["P2"]))[1]["cancelled"] == [ids["P2"]]
    code, out = cancel(str(ids["P1"]), str(ids["P2"]))  # done, and already cancelled
    assert code == 1 and out["not_cancellable"] == [ids["P1"], ids["P2"]]
    assert cancel("--state", "failed")[1]["cancelled"] == [ids["P0"]]
    assert cancel("--batch", "b2", "--state", "queued")[1]["cancelled"] == [ids[q] for q in ("Q0", "Q1", "Q2")]
    assert cancel("--batch", "b1")[1]["cancelled"] == [ids["P3"]]
    assert main(["jobs", "cancel"]) == 2  # no selection: usage error, nothing cancelled

    assert main(["jobs", "retry", "--all"]) == 0 and "queued 0 jobs" in capsys.readouterr().err
    assert main(["jobs", "list", "--state", "cancelled", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 6 and {j["status"] for j in listed} == {"cancelled"}
    assert "cancelled while failed (empty file)" in {j["reason"] for j in listed}
    with App.open(Settings.load()) as app, transaction(app.sessions) as s:
        assert jobs.claim(s, "w", 100, lease_seconds=600) == []  # never claimed
    assert main(["jobs", "retry", "--cancelled", "--batch", "b2"]) == 0
    assert "queued 3 jobs again" in capsys.readouterr().err


# --- doctor ------------------------------------------------------------------------------


def test_doctor_reports_stuck_jobs_and_repair_keeps_them(settings: Settings) -> None:
    lease = settings.enroll.lease_seconds
    long_ago = utcnow() - timedelta(seconds=(STUCK_LEASES + 1) * lease)
    with open_deployment(settings) as dep:
        with transaction(dep.app.sessions) as s:
            jobs.enqueue(s, "b", [jobs.JobSpec("/nowhere/a.jpg", "A"), jobs.JobSpec("/nowhere/b.jpg", "B")])
            (claimed,) = jobs.claim(s, "gone:1", 1, lease_seconds=lease)
        with transaction(dep.app.sessions) as s:
            s.execute(update(Job).values(updated_at=long_ago, lease_expires_at=long_ago))
        report = diagnose(dep.app)
        assert not report.clean
        assert to_json(report)["stuck_jobs"] == 2
        assert to_json(report)["stuck_jobs_by_state"] == {"queued": 1, "running": 1}
        repair(dep.app, report)
        after = diagnose(dep.app)  # the stale lease is released, nothing is dropped: both wait in the queue
        assert after.stuck_jobs == {"queued": [claimed.id + 1]} and not after.clean
        with dep.app.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.queued)) == 2
        with transaction(dep.app.sessions) as s:
            jobs.cancel(s, state=JobStatus.queued)
        assert diagnose(dep.app).clean


def test_a_long_queue_that_moves_is_not_stuck(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    long_ago = utcnow() - timedelta(seconds=(STUCK_LEASES + 1) * settings.enroll.lease_seconds)
    with open_deployment(settings) as dep:
        with transaction(dep.app.sessions) as s:
            jobs.enqueue(s, "b", [jobs.JobSpec(f"/nowhere/{i}.jpg", "A") for i in range(2)])
            s.execute(update(Job).values(updated_at=long_ago))
            (first,) = jobs.claim(s, "w", 1, lease_seconds=60)
            jobs.finish(s, first.id, "enrolled")  # a worker is eating through the queue
        assert diagnose(dep.app).clean
