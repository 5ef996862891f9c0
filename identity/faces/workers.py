"""The one pool of worker processes for per-image work (detection, embedding, chip cutting).

Each worker builds the face pipeline once (its models load on first use) and runs a
task over chunks of items; a task is a module-level function `(pipeline, chunk) -> results`
so it pickles by name. At most a few chunks per worker are in flight, so millions of
items never become millions of pending futures; results come back in input order.

Workers never outlive the process that started them (each loads ~430 MB of models): each
reads a watchdog pipe whose only write end the parent holds, and exits at EOF, which the
kernel delivers however the parent ended (SIGKILL included); on Linux the parent-death
signal is a second guard. The pool is joined on every exit path, so no zombie is left.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import TypeVar

from identity.config import Settings
from identity.faces.pipeline import FacePipeline, build_pipeline

logger = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2
T = TypeVar("T")
R = TypeVar("R")
Task = Callable[[FacePipeline, list[T]], list[R]]

PR_SET_PDEATHSIG = 1  # linux/prctl.h

_worker_pipeline: FacePipeline | None = None  # one per worker process, set by _start_worker
_open_pools = 0  # pools of this process still running: the resource tracker is stopped when none is
_owns_tracker = False  # the first of them started the tracker (none was running): it is ours to stop
_open_pools_lock = threading.Lock()


def run_in_workers(
    settings: Settings, task: Task[T, R], items: Iterable[T], workers: int, chunk_size: int, threads: int | None = None
) -> Iterator[tuple[list[T], list[R]]]:
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
    with _worker_pool(settings, workers, threads) as pool:
        pending: deque[tuple[list[T], Future[list[R]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_run, task, chunk)))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


@contextmanager
def _worker_pool(settings: Settings, workers: int, threads: int) -> Iterator[ProcessPoolExecutor]:
    """A pool whose workers end with this process, joined when the block ends, however it ends.

    On an exception (Ctrl-C included) the watchdog is closed first, so busy workers exit at
    once instead of finishing chunks nobody will read.
    """
    global _open_pools, _owns_tracker
    # Read before the pool's queues start the resource tracker.
    tracker_was_running = getattr(resource_tracker._resource_tracker, "_fd", 0) is not None
    watch_read, watch_write = multiprocessing.Pipe(duplex=False)  # non-inheritable: only the workers get the read end
    context = multiprocessing.get_context("spawn")  # fork would copy ONNX Runtime/torch thread pools mid-flight
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(settings, threads, watch_read, os.getpid())
    )
    with _open_pools_lock:
        if not _open_pools:
            _owns_tracker = not tracker_was_running
        _open_pools += 1
    try:
        yield pool
    except BaseException:
        watch_write.close()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        watch_write.close()
        watch_read.close()
        del pool
        _stop_resource_tracker()


def _stop_resource_tracker() -> None:
    """Stop and reap multiprocessing's resource tracker once this process's last pool has ended.

    The spawn context starts the tracker (a child process) for the pool's semaphores and never
    waits for it: it would end only with this process and then linger as a zombie under an
    init that does not reap. It is stopped only if our pools started it (another user of
    multiprocessing here may still need it) and when none of them (nor a semaphore of theirs,
    hence the collection) is left; a later pool starts a new one. `_stop` and `_fd` are
    CPython's own (3.8+), used by its test suite; without them the tracker is left as before.
    """
    global _open_pools
    with _open_pools_lock:
        _open_pools -= 1
        if _open_pools or not _owns_tracker:
            return
        gc.collect()  # the pool's queues finalize their semaphores, telling the tracker, before it stops
        stop = getattr(resource_tracker._resource_tracker, "_stop", None)
        if stop is not None:
            stop()


def _start_worker(settings: Settings, threads: int, watchdog: Connection, parent: int) -> None:
    global _worker_pipeline
    _die_with_parent(watchdog, parent)
    _worker_pipeline = build_pipeline(settings, threads=threads)
    logger.debug("worker %d ready (%d threads)", os.getpid(), threads)


def _die_with_parent(watchdog: Connection, parent: int) -> None:
    """End this worker as soon as its parent process is gone, whatever it died of.

    The parent holds the only write end of `watchdog`; the kernel closes it when the parent
    ends, and the blocked read returns EOF. PR_SET_PDEATHSIG (Linux) is a second guard: it
    fires when the parent's thread that spawned us ends, and a pool lives within one
    generator, driven by one thread.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the guard was set
        os._exit(1)
    threading.Thread(target=_exit_at_eof, args=(watchdog,), name="parent-watchdog", daemon=True).start()


def _exit_at_eof(watchdog: Connection) -> None:
    """Block on the watchdog pipe; nothing is ever sent, so the read ends only when the parent is gone."""
    try:
        watchdog.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)  # no cleanup: the parent's stores are not ours, and a half-done chunk is redone by the next run


def _run(task: Task[T, R], chunk: list[T]) -> list[R]:
    assert _worker_pipeline is not None, "worker started without _start_worker"
    return task(_worker_pipeline, chunk)


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk
