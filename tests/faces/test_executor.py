"""The inference executor interface, held by both implementations on real images: order kept, a corrupt image
fails alone, and close() ends the workers (processes or threads)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity.config import Settings
from identity.errors import ImageError
from identity.faces import ImageFaces, build_pipeline
from identity.faces.executor import (
    ExecutorBusy,
    ExecutorClosed,
    InferenceExecutor,
    ProcessExecutor,
    ThreadExecutor,
)


@pytest.fixture
def photos(tmp_path: Path, one_face: Image.Image) -> list[Path]:
    """A face, a corrupt JPEG, a blank image, and the face again."""
    face, broken, blank = tmp_path / "face.png", tmp_path / "broken.jpg", tmp_path / "blank.png"
    one_face.save(face)
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    Image.new("RGB", (64, 64)).save(blank)
    return [face, broken, blank, face]


def executors(settings: Settings) -> dict[str, InferenceExecutor]:
    return {
        "process": ProcessExecutor(settings, workers=2, chunk_size=1),
        "thread": ThreadExecutor(lambda: build_pipeline(settings), threads=2),
    }


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_outcomes_come_in_order_and_a_corrupt_image_fails_alone(
    kind: str, settings: Settings, photos: list[Path]
) -> None:
    executor = executors(settings)[kind]
    try:
        executor.warm()
        outcomes = list(executor.analyse(photos))
    finally:
        executor.close()
    assert [path for path, _ in outcomes] == [str(p) for p in photos]
    face, broken, blank, again = (outcome for _, outcome in outcomes)
    assert isinstance(broken, ImageError) and broken.path == str(photos[1])
    assert isinstance(blank, ImageFaces) and blank.faces == ()
    assert isinstance(face, ImageFaces) and isinstance(again, ImageFaces) and len(face.faces) == 1
    assert np.allclose(face.faces[0].embedding, again.faces[0].embedding, atol=1e-6)


def test_close_ends_the_worker_processes_of_an_open_stream(settings: Settings, photos: list[Path]) -> None:
    executor = ProcessExecutor(settings, workers=2, chunk_size=1)
    stream = executor.analyse(photos * 3)
    next(stream)  # the pool runs, chunks in flight
    assert multiprocessing.active_children()
    executor.close()
    assert not multiprocessing.active_children()
    with pytest.raises(ExecutorClosed):
        executor.analyse(photos)


def test_close_ends_the_inference_threads(settings: Settings, photos: list[Path]) -> None:
    executor = ThreadExecutor(lambda: build_pipeline(settings), threads=2)
    executor.warm()
    assert len(_inference_threads()) == 2  # warm started every thread
    executor.close()
    assert not _inference_threads()
    with pytest.raises(ExecutorClosed):
        list(executor.analyse(photos))


def test_a_full_thread_executor_refuses_a_caller_that_will_not_wait(settings: Settings, photos: list[Path]) -> None:
    executor = ThreadExecutor(lambda: build_pipeline(settings), threads=1, queue_limit=0)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:  # a task that keeps the one slot until released
        started.set()
        release.wait(30)

    holder = threading.Thread(target=lambda: list(executor.analyse(photos[:1], before_each=hold)))
    try:
        holder.start()
        assert started.wait(30)
        with pytest.raises(ExecutorBusy):
            list(executor.analyse(photos, wait=False))
        release.set()
        holder.join(30)
        assert len(list(executor.analyse(photos[:1], wait=False))) == 1  # the slot came back
    finally:
        release.set()
        executor.close()


def _inference_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("identity-inference")]
