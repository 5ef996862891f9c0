"""The server's background work is the worker service: an enrollment queued over HTTP is processed by
run_worker in the server's job thread, on the server's inference threads, and stops with the server."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from identity.app.core import App
from identity.config import ApiSettings, EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.queue import worker

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api import context  # noqa: E402
from identity.api.app import create_api  # noqa: E402


def test_an_enrollment_queued_over_http_runs_through_the_worker_service(
    tmp_path: Path, lfw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imports = tmp_path / "imports"
    for person in ("Al_Gore", "Aaron_Peirsol"):
        (imports / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(lfw_dir / person / f"{person}_{n:04d}.jpg", imports / person)
    settings = Settings(
        data_dir=tmp_path / "data",
        workers=1,
        enroll=EnrollSettings(chunk_size=2),
        api=ApiSettings(import_roots=str(imports), inference_workers=1),
    )
    runs: list[dict[str, Any]] = []
    analysed_in: set[str] = set()
    real_run_worker, real_process_queue = worker.run_worker, worker.process_queue

    def spied_run_worker(app: App, **options: Any) -> Any:  # the real worker, its call recorded
        runs.append({"thread": threading.current_thread().name, **options})
        summary = real_run_worker(app, **options)
        runs[-1]["returned"] = True
        return summary

    def spied_process_queue(*args: Any) -> Any:  # run_worker's own queue loop, with the analyse it was given
        analyse = args[-1]
        return real_process_queue(*args[:-1], lambda paths: _noting(analysed_in, analyse(paths)))

    monkeypatch.setattr(context, "run_worker", spied_run_worker)
    monkeypatch.setattr(worker, "process_queue", spied_process_queue)
    with App.open(settings) as core:
        key = create_key(core, "enroller", "enroll").key
        with TestClient(create_api(core)) as client:
            ctx = client.app.state.ctx
            queued = client.post(
                "/v1/enrollments", json={"paths": [str(imports)]}, headers={"Authorization": f"Bearer {key}"}
            )
            assert queued.status_code == 202 and queued.json()["queued"] == 4
            jobs = _wait_done(client, key, queued.json()["batch"])
            assert sorted(job["outcome"] for job in jobs) == ["enrolled"] * 4
            [run] = runs
            assert run["thread"] == "identity-jobs" and run["stop"] is ctx._stop and run["wake"] is ctx._wake
            assert run["analyse"] == ctx.inference.analyse  # the server's inference threads, not worker processes
            assert analysed_in == {"identity-jobs"}  # images pulled through the worker's loop in the job thread
        assert runs[-1].get("returned")  # the server's stop ended the worker


def _noting(threads: set[str], outcomes: Any) -> Any:
    for outcome in outcomes:
        threads.add(threading.current_thread().name)
        yield outcome


def _wait_done(client: TestClient, key: str, batch: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while True:
        jobs = client.get("/v1/jobs", params={"batch": batch}, headers={"Authorization": f"Bearer {key}"}).json()[
            "items"
        ]
        if all(job["status"] == "done" for job in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)
