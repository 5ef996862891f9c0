"""The embedded engine's shard is used by one thread at a time: every call waits for the one in progress,
so the server's request threads and its background worker can share the App's collections."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from identity.config import Settings
from identity.store.vectors import EdgeIndex, VectorPoint

DIM = 8


@pytest.fixture
def index(tmp_path: Path):
    with EdgeIndex.open(Settings(data_dir=tmp_path / "data"), "threads v1", DIM) as opened:
        opened.upsert([VectorPoint(uuid.uuid4(), uuid.uuid4(), np.eye(DIM, dtype=np.float32)[i]) for i in range(3)])
        yield opened


@pytest.mark.parametrize("call", ["count", "search", "upsert", "iter_ids", "purge"])
def test_a_call_waits_while_another_thread_uses_the_shard(index: EdgeIndex, call: str) -> None:
    calls = {
        "count": lambda: index.count(),
        "search": lambda: index.search(np.ones(DIM, dtype=np.float32), 2),
        "upsert": lambda: index.upsert([VectorPoint(uuid.uuid4(), uuid.uuid4(), np.ones(DIM, dtype=np.float32))]),
        "iter_ids": lambda: list(index.iter_ids()),
        "purge": lambda: index.purge(),
    }
    done = threading.Event()
    worker = threading.Thread(target=lambda: (calls[call](), done.set()))
    with index._mutex:  # another thread's call in progress
        worker.start()
        assert not done.wait(0.3), f"{call} ran while another thread held the shard"
    worker.join(timeout=30)
    assert done.is_set()


def test_threads_searching_while_one_writes_all_get_answers(index: EdgeIndex) -> None:
    failures: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(50):
                assert index.search(np.ones(DIM, dtype=np.float32), 3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    def write() -> None:
        try:
            for _ in range(20):
                index.upsert([VectorPoint(uuid.uuid4(), uuid.uuid4(), np.random.rand(DIM).astype(np.float32) + 0.1)])
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert index.count() == 23
