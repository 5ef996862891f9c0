"""The one pool of worker processes for per-image work (detection, embedding, chip cutting).

Each worker builds the face pipeline once (its models load on first use) and runs a
task over chunks of items; a task is a module-level function `(pipeline, chunk) -> results`
so it pickles by name. At most a few chunks per worker are in flight, so millions of
items never become millions of pending futures; results come back in input order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, TypeVar

from identity.config import Settings
from identity.faces.pipeline import FacePipeline, build_pipeline

logger = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2
T = TypeVar("T")
R = TypeVar("R")
Task = Callable[[FacePipeline, list[T]], list[R]]

_worker_pipeline: FacePipeline | None = None  # one per worker process, set by _start_worker


def run_in_workers(settings: Settings, task: Task[T, R], items: Iterable[T], workers: int, chunk_size: int,
                   threads: int | None = None) -> Iterator[tuple[list[T], list[R]]]:
    """(chunk, task's results for it) for each chunk of `items`, in input order.

    `workers` <= 1 runs in this process. `threads`: per worker for the models' own thread
    pools (default: the cores shared out among the workers).
    """
    chunks = _chunks(iter(items), chunk_size)
    if workers <= 1:
        pipeline = build_pipeline(settings, threads=threads)
        for chunk in chunks:
            yield chunk, task(pipeline, chunk)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # fork would copy ONNX Runtime/torch thread pools mid-flight
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(settings, threads)) as pool:
        pending: deque[tuple[list[T], Future[list[R]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_run, task, chunk)))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _start_worker(settings: Settings, threads: int) -> None:
    global _worker_pipeline
    _worker_pipeline = build_pipeline(settings, threads=threads)
    logger.debug("worker %d ready (%d threads)", os.getpid(), threads)


def _run(task: Task[T, R], chunk: list[T]) -> list[R]:
    assert _worker_pipeline is not None, "worker started without _start_worker"
    return task(_worker_pipeline, chunk)


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk
