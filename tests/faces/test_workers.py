"""The one worker pool: every task runs with a worker's own pipeline, results come back in input order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from identity.config import Settings
from identity.faces.pipeline import FacePipeline
from identity.faces.workers import run_in_workers

HARNESS = Path(__file__).with_name("pool_lifetime.py")


def doubled_with_worker(pipeline: FacePipeline, chunk: list[int]) -> list[tuple[int, int, str]]:
    return [(os.getpid(), 2 * item, pipeline.model_id) for item in chunk]


def test_chunks_come_back_in_order_from_several_workers(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    runs = list(run_in_workers(settings, doubled_with_worker, range(40), workers=2, chunk_size=3))
    assert [item for chunk, _ in runs for item in chunk] == list(range(40))
    results = [r for _, done in runs for r in done]
    assert [doubled for _, doubled, _ in results] == [2 * i for i in range(40)]
    assert {pid for pid, _, _ in results} - {os.getpid()}  # the work left this process
    assert {model for _, _, model in results} == {"dlib-resnet@2"}  # each worker built the configured pack


def test_one_worker_runs_in_this_process(tmp_path) -> None:
    runs = list(run_in_workers(Settings(data_dir=tmp_path), doubled_with_worker, [1, 2], workers=1, chunk_size=5))
    assert runs == [([1, 2], [(os.getpid(), 2, "dlib-resnet@2"), (os.getpid(), 4, "dlib-resnet@2")])]


@pytest.mark.parametrize("mode", ["kill", "interrupt", "normal"])
def test_workers_never_outlive_their_parent(mode: str) -> None:
    """kill: SIGKILL of the parent while both workers are busy; interrupt: Ctrl-C in the parent while
    a worker is busy; normal: a run to the end. Nothing may be left below the parent: no worker, no
    resource tracker, no zombie (tests/faces/pool_lifetime.py, a subreaper, sees what init would get).
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("the harness reads /proc and uses prctl")
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(HARNESS), mode], capture_output=True, text=True, timeout=60)
    result = json.loads(run.stdout)
    assert result["left"] == [], result
    if mode == "kill":
        assert len(result["busy"]) == 2  # both workers were mid-task when the parent died
    assert time.monotonic() - started < 30  # nobody waited for a busy task to finish
