"""Bulk enrollment on real stores: every image ends in one state, re-runs add nothing,
and a run stopped at any point resumes without duplicates or orphan vectors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from identity.app.core import open_deployment
from identity.config import Settings
from identity.services.enrollment.inputs import from_directory, from_manifest
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.maintenance.doctor import diagnose, repair
from identity.services.queue.loop import process_queue, queue_jobs
from identity.store.sql.tables import Face, FaceStatus
from identity.store.vectors import VectorPoint

PEOPLE = ["Aaron_Peirsol", "Al_Gore", "Alejandro_Toledo"]


@pytest.fixture
def photos(tmp_path: Path, lfw_dir: Path) -> Path:
    """3 people from lfw-dev, plus the awkward cases every archive has."""
    import insightface

    root = tmp_path / "photos"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for image in sorted((lfw_dir / person).iterdir())[:2]:
            shutil.copy(image, root / person / image.name)
    first = sorted((root / "Al_Gore").iterdir())[0]
    shutil.copy(first, root / "Al_Gore" / "copy_of_first.jpg")  # same bytes, same person
    (root / "Impostor").mkdir()
    shutil.copy(first, root / "Impostor" / "claimed.jpg")  # same bytes, another person
    (root / "Alejandro_Toledo" / "broken.jpg").write_bytes(first.read_bytes()[:600])  # truncated JPEG
    (root / "Alejandro_Toledo" / "notes.txt").write_text("not an image")
    (root / "Alejandro_Toledo" / ".DS_Store").write_bytes(b"\0")  # hidden: skipped
    (root / "Group").mkdir()
    shutil.copy(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg", root / "Group" / "t1.jpg")
    return root


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1)


def enroll(settings: Settings, specs) -> dict[str, str]:
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, specs)
        writer = EnrollmentWriter(dep)
        summary = process_queue(dep.app, writer, batch, 1)
    return {Path(r.source_path).parent.name + "/" + Path(r.source_path).name: r.outcome for r in summary.results}


def store_state(settings: Settings) -> tuple[int, int, bool]:
    with open_deployment(settings) as dep:
        with dep.app.sessions() as s:
            indexed = s.scalar(select(func.count()).select_from(Face).where(Face.status == FaceStatus.indexed))
        return indexed, dep.index.count(), diagnose(dep.app).clean


def test_every_image_ends_in_one_state_and_rerun_adds_nothing(settings: Settings, photos: Path) -> None:
    inputs = from_directory(photos)
    outcomes = enroll(settings, inputs)
    assert len(outcomes) == 10  # .DS_Store and notes.txt skipped before queueing (issue 11: not failures)
    assert outcomes["Alejandro_Toledo/broken.jpg"] == "failed"
    assert {(Path(r.source_path).name, r.outcome, r.reason) for r in inputs.unqueued} == {
        (".DS_Store", "skipped", "hidden"),
        ("notes.txt", "skipped", "not an image file"),
    }
    assert outcomes["Al_Gore/copy_of_first.jpg"] == "duplicate"
    assert outcomes["Impostor/claimed.jpg"] == "conflict"
    assert outcomes["Group/t1.jpg"] == "rejected"
    enrolled = [k for k, v in outcomes.items() if v == "enrolled"]
    assert len(enrolled) == 6
    assert store_state(settings) == (6, 6, True)

    again = enroll(settings, from_directory(photos))
    assert {k for k, v in again.items() if v == "duplicate"} >= set(enrolled) | {"Group/t1.jpg"}
    assert "enrolled" not in again.values()
    assert store_state(settings) == (6, 6, True)


def test_manifest_paths_are_relative_to_it_and_carry_attributes(tmp_path: Path, photos: Path) -> None:
    manifest = photos / "people.csv"
    manifest.write_text("path,external_id,display_name,team\nAl_Gore/copy_of_first.jpg,E-42,Al Gore,blue\n")
    (spec,) = list(from_manifest(manifest))
    assert spec.source_path == str(photos / "Al_Gore" / "copy_of_first.jpg")
    assert (spec.external_id, spec.display_name, spec.attributes) == ("E-42", "Al Gore", {"team": "blue"})


class CrashAfterVectors(Exception):
    pass


def test_crash_between_vector_write_and_commit_is_completed_by_a_rerun(settings: Settings, photos: Path) -> None:
    specs = [s for s in from_directory(photos) if "Aaron" in s.source_path]
    with open_deployment(settings) as dep:
        real_upsert = dep.index.upsert

        def upsert_then_die(points):  # the vectors are durable, the process dies before step 3
            real_upsert(points)
            raise CrashAfterVectors()

        dep.index.upsert = upsert_then_die
        batch, _ = queue_jobs(dep.app, specs)
        with pytest.raises(CrashAfterVectors):
            writer = EnrollmentWriter(dep)
            process_queue(dep.app, writer, batch, 1)
        report = diagnose(dep.app)
        assert len(report.pending_with_vector) == 2 and not report.clean
    outcomes = enroll(settings, specs)
    assert sorted(outcomes.values()) == ["enrolled", "enrolled"]
    assert store_state(settings) == (2, 2, True)


def test_doctor_repairs_orphans_and_missing_vectors(settings: Settings, photos: Path) -> None:
    enroll(
        settings, [s for s in from_directory(photos) if "Aaron" in s.source_path or "Alejandro_Toledo" in s.source_path]
    )
    with open_deployment(settings) as dep:
        ids = [face_id for face_id, _ in dep.index.iter_ids()]
        dep.index.delete(ids[:1])  # an indexed face loses its vector
        dep.index.set_person(ids[1:2], uuid.uuid4())  # a merge stopped between SQL and the vectors
        stray = uuid.uuid4()
        dep.index.upsert([VectorPoint(stray, uuid.uuid4(), np.ones(dep.pipeline.dim, np.float32))])
        report = diagnose(dep.app)
        assert report.orphan_vectors == [str(stray)] and len(report.missing_vectors) == 1
        assert list(report.wrong_person) == [str(ids[1])]
        repair(dep.app, report)
        assert diagnose(dep.app).clean
    assert store_state(settings) == (4, 4, True)


def test_sigkill_midway_then_rerun_leaves_one_face_per_image(tmp_path: Path, photos: Path) -> None:
    env = {
        **os.environ,
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "IDENTITY_WORKERS": "1",
        "IDENTITY_ENROLL__CHUNK_SIZE": "1",
    }
    env.pop("IDENTITY_DATABASE_URL", None)
    env.pop("IDENTITY_QDRANT_URL", None)
    cmd = [sys.executable, "-m", "identity_cli.main", "enroll", str(photos)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = Settings.load(env=env)
    deadline = time.time() + 60
    db = tmp_path / "data" / "identity.db"
    import sqlite3

    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as conn:
                done = conn.execute(
                    "select count(*) from jobs where status != 'queued' and status != 'running'"
                ).fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 3:
            break
    assert proc.poll() is None, "enrollment finished before it could be killed; make the set bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    result = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 5, result.stderr  # the broken files still fail
    indexed, vectors, clean = store_state(settings)
    assert (indexed, vectors, clean) == (6, 6, True)


def test_cli_queue_then_worker_then_report(capsys, clean_env, tmp_path: Path, lfw_dir: Path) -> None:
    import csv
    import json

    from identity_cli.main import main

    root = tmp_path / "small"
    for person in ("Al_Gore", "Aaron_Peirsol"):
        (root / person).mkdir(parents=True)
        shutil.copy(sorted((lfw_dir / person).iterdir())[0], root / person)
    (root / "Al_Gore" / "empty.jpg").write_bytes(b"")

    assert main(["enroll", str(root), "--queue-only"]) == 0
    assert "queued 3 jobs" in capsys.readouterr().err
    assert main(["worker", "--drain", "--json", "--workers", "1"]) == 5  # one image failed
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts == {"enrolled": 2, "failed": 1}
    assert main(["jobs", "list", "--state", "failed", "--json"]) == 0
    [failed] = json.loads(capsys.readouterr().out)
    assert failed["source_path"].endswith("empty.jpg") and "empty" in failed["reason"]
    assert main(["jobs", "retry"]) == 0
    assert "queued 1 jobs again" in capsys.readouterr().err

    report = tmp_path / "report.csv"
    assert main(["enroll", str(root), "--report", str(report), "--json"]) == 5
    rows = list(csv.DictReader(report.open()))
    assert sorted(r["outcome"] for r in rows) == ["duplicate", "duplicate", "failed"]
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True


def test_drain_takes_over_jobs_of_dead_and_vanished_workers(
    capsys, clean_env, tmp_path: Path, lfw_dir: Path, monkeypatch
) -> None:
    """A worker SIGKILLed on this host hands its jobs over at once; one on another machine when its lease ends."""
    import json
    import socket
    from datetime import timedelta

    from identity.app.core import App
    from identity.store.sql.db import transaction
    from identity.store.sql.tables import Job, JobStatus, utcnow
    from identity_cli.main import main

    root = tmp_path / "small"
    for person in ("Al_Gore", "Aaron_Peirsol"):
        (root / person).mkdir(parents=True)
        shutil.copy(sorted((lfw_dir / person).iterdir())[0], root / person)
    assert main(["enroll", str(root), "--queue-only"]) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    lease = 3
    with App.open(Settings.load()) as app, transaction(app.sessions) as session:
        first, second = session.query(Job).order_by(Job.id).all()
        for job, owner, seconds in (
            (first, f"{socket.gethostname()}:{dead.pid}", 600),
            (second, "another-machine:4242", lease),
        ):
            job.status, job.lease_owner, job.attempts = JobStatus.running, owner, 1
            job.lease_expires_at = utcnow() + timedelta(seconds=seconds)
    capsys.readouterr()
    started = time.monotonic()
    assert main(["worker", "--drain", "--json", "--workers", "1", "--poll", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"enrolled": 2}
    assert time.monotonic() - started >= lease - 1  # it waited for the other machine's lease instead of leaving
    assert main(["jobs", "list", "--json"]) == 0
    assert {(j["status"], j["attempts"]) for j in json.loads(capsys.readouterr().out)} == {("done", 2)}


def test_a_rerun_repairs_the_templates_a_kill_between_steps_3_and_4_left(settings: Settings, photos: Path) -> None:
    enroll(settings, from_directory(photos))
    with open_deployment(settings) as dep:
        [(person_id, _), *_] = list(dep.templates.iter_ids())
        dep.templates.delete([person_id])  # as a run killed after its commit, before its template write
        assert not diagnose(dep.app).clean
    enroll(settings, from_directory(photos))  # every photo a duplicate now: no model runs, the template is rewritten
    assert store_state(settings) == (6, 6, True)
