"""Where a search's storage time goes: named stages timed only while someone is recording them.

`benchmarks/search_latency.py` records each search's stages (templates, persons, faces, decision,
log, commit) to show which part of vector+SQL grows with the store. Outside a recording a stage
costs one context-variable read, so the search path keeps its marks in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

STAGES = ("templates", "persons", "faces", "decision", "log", "commit")  # in the order a search runs them

_recording: ContextVar[dict[str, float] | None] = ContextVar("search_stages", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall time (ms) to `name` in the recording in force, if any."""
    times = _recording.get()
    if times is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + 1000 * (time.perf_counter() - started)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Record the stages of the searches run inside the block: milliseconds by stage name."""
    times: dict[str, float] = {}
    token = _recording.set(times)
    try:
        yield times
    finally:
        _recording.reset(token)
