"""The one inference executor interface: image files in, their outcomes out, in input order.

Two implementations, used through `InferenceExecutor` alone:

- ProcessExecutor, for bulk jobs (enroll, reindex, evaluation caches): a pool of worker
  processes (identity.faces.workers) started per stream of paths, each worker with its own
  pipeline, a few chunks in flight per worker;
- ThreadExecutor, for the HTTP server: a pool of threads started and warmed once (each
  thread's own pipeline, models loaded before the first request), with a bounded number of
  callers admitted at a time; past it a caller waits, or is refused (ExecutorBusy) at once.

An outcome is (path, ImageFaces) for a usable image and (path, ImageError) for any other: an
exception one image raises is that image's failure (identity.faces.parallel). ModelError,
which concerns every image, is raised.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Protocol
from weakref import WeakSet

from identity.config import Settings
from identity.faces.parallel import CHUNK_SIZE, Analysed, analyse_chunk, revive
from identity.faces.pipeline import FacePipeline, build_pipeline
from identity.faces.workers import run_in_workers

PathLike = str | os.PathLike[str]
STREAM_CHUNK = 4  # a thread task's images: small, so a long job's chunks interleave with requests


__all__ = [
    "Analysed",
    "ExecutorBusy",
    "ExecutorClosed",
    "InferenceExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "process_paths_parallel",
]


class ExecutorBusy(Exception):
    """Every admission slot of a ThreadExecutor is taken and the caller would not wait."""


class ExecutorClosed(Exception):
    """The executor was closed: it analyses nothing more."""


class InferenceExecutor(Protocol):
    """Detection and embedding of image files, outcomes in input order."""

    def analyse(self, paths: Iterable[PathLike]) -> Iterator[Analysed]:
        """(path, ImageFaces | ImageError) per path, in input order, lazily: a stream of millions stays bounded."""
        ...

    def warm(self) -> None:
        """Make the first images cost no start-up: start what can be started, load what can be loaded."""
        ...

    def close(self) -> None:
        """End every worker (process or thread); analysing afterwards raises ExecutorClosed."""
        ...


class ProcessExecutor:
    """Worker processes for a bulk job: each `analyse` stream starts its pool and ends it when the stream ends.

    A pool is not kept between streams: each worker holds its models (~430 MB), which a process
    that runs one bulk job at a time should not keep while idle. `workers` <= 1 runs in this process.
    """

    def __init__(self, settings: Settings, workers: int | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self.settings = settings
        self.workers = workers or settings.worker_count
        self.chunk_size = chunk_size
        self._streams: WeakSet[Generator[Analysed, None, None]] = WeakSet()  # a finished stream is dropped
        self._closed = False

    def analyse(self, paths: Iterable[PathLike]) -> Iterator[Analysed]:
        if self._closed:
            raise ExecutorClosed("the process executor is closed")
        self.warm()  # a bad setting fails here, before any worker starts, not in each worker
        stream = self._stream(paths)
        self._streams.add(stream)
        return stream

    def _stream(self, paths: Iterable[PathLike]) -> Generator[Analysed, None, None]:
        chunks = run_in_workers(
            self.settings, analyse_chunk, (os.fspath(p) for p in paths), self.workers, self.chunk_size
        )
        for _, outcomes in chunks:
            yield from revive(outcomes)

    def warm(self) -> None:
        """Only check the settings (nothing loads): the workers load their models as each stream starts them."""
        build_pipeline(self.settings)

    def close(self) -> None:
        """End the open streams: their pools shut down and their worker processes exit."""
        self._closed = True
        for stream in list(self._streams):
            stream.close()  # GeneratorExit in the stream ends its pool at once


def process_paths_parallel(
    settings: Settings, paths: Iterable[PathLike], workers: int | None = None, chunk_size: int = CHUNK_SIZE
) -> Iterator[Analysed]:
    """(path, ImageFaces) for each readable image and (path, ImageError) for each other one, in input order:
    one bulk stream of a ProcessExecutor. `workers` defaults to settings.worker_count; 1 runs in this process.
    """
    return ProcessExecutor(settings, workers, chunk_size).analyse(paths)


class ThreadExecutor:
    """A warmed pool of inference threads, each with its own pipeline (models are not shared between threads).

    At most `threads + queue_limit` callers are admitted at once (each runs one task at a time):
    a caller that finds none free waits, or gets ExecutorBusy when it asked not to wait.
    """

    def __init__(self, new_pipeline: Callable[[], FacePipeline], threads: int, queue_limit: int = 0) -> None:
        self.threads = max(threads, 1)
        self._new_pipeline = new_pipeline
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="identity-inference")
        self._slots = threading.BoundedSemaphore(self.threads + max(queue_limit, 0))
        self._local = threading.local()
        self._closed = False

    def analyse(
        self,
        paths: Iterable[PathLike],
        wait: bool = True,
        chunk: int = STREAM_CHUNK,
        before_each: Callable[[], None] | None = None,
    ) -> Iterator[Analysed]:
        """Outcomes in order, `chunk` images per thread task; `before_each` runs before each image is started
        (a request's deadline: raising there frees the thread for the next caller).

        Each task is admitted on its own, when its outcomes are asked for, and leaves its slot when done
        (a long job's stream holds none between its chunks): ExecutorBusy if `wait` is false and every
        slot is taken."""
        items = iter(paths)
        while batch := [os.fspath(p) for p in islice(items, chunk)]:
            if self._closed:
                raise ExecutorClosed("the inference threads are closed")
            if not self._slots.acquire(blocking=wait):
                raise ExecutorBusy("every inference thread and queue slot is taken")
            try:
                outcomes = self._pool.submit(self._analyse, batch, before_each).result()
            finally:
                self._slots.release()
            yield from outcomes

    def _analyse(self, paths: list[str], before_each: Callable[[], None] | None) -> list[Analysed]:
        pipeline = self._pipeline()
        found: list[Analysed] = []
        for path in paths:
            if before_each is not None:
                before_each()
            found += revive(analyse_chunk(pipeline, [path]))
        return found

    def _pipeline(self) -> FacePipeline:
        pipeline: FacePipeline | None = getattr(self._local, "pipeline", None)
        if pipeline is None:
            pipeline = self._local.pipeline = self._new_pipeline()
        return pipeline

    def warm(self) -> None:
        """Start every inference thread and load its models, so the first requests do not pay for it."""
        ready = threading.Barrier(self.threads)

        def load() -> None:
            self._pipeline().load()
            ready.wait(timeout=300)  # holds this thread until all are started, so each gets one task

        for future in [self._pool.submit(load) for _ in range(self.threads)]:
            future.result()

    def close(self) -> None:
        """Refuse new work, let the tasks running finish, and end the threads."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
