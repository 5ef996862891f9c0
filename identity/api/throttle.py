"""Failed-authentication throttling, per server process: after too many failures for one key id or
from one client address within a window, further attempts get 429 + Retry-After until it passes.

Counts live in this process's memory (several servers each count their own; a restart forgets):
enough to make guessing a key's secret slow, without a database write per bad request. The key
id is the public half of a key; the secret is never kept or logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from identity.api.errors import ApiError

log = logging.getLogger("identity.api.auth")
MAX_TRACKED = 100_000  # keys and addresses remembered at most: a flood of fresh addresses cannot grow memory unbounded


class Throttle:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._announced: dict[tuple[str, ...], float] = {}  # when each throttled caller was last logged
        self._lock = threading.Lock()

    def check(self, *subjects: str) -> None:
        """429 when any subject (`key:<id>`, `addr:<ip>`) is over the limit; nothing else."""
        now = self._clock()
        with self._lock:
            wait = max((self._wait(s, now) for s in subjects if s), default=0.0)
            announce = wait > 0 and self._announced.get(subjects, -self.window_s) <= now - self.window_s
            if announce:  # one line per subject and window: a flood of refused attempts does not flood the log
                self._announced[subjects] = now
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            if announce:
                log.warning(
                    "429 authentication throttled for %s (retry in %d s)", ", ".join(filter(None, subjects)), retry
                )
            raise ApiError(
                429,
                "too many failed authentications: wait and try again",
                {"retry_after_s": retry},
                headers={"Retry-After": str(retry)},
            )

    def failed(self, *subjects: str) -> None:
        """Count one failure against each subject."""
        now = self._clock()
        with self._lock:
            if len(self._failures) > MAX_TRACKED:
                self._forget_old(now)
            for subject in filter(None, subjects):
                self._failures.setdefault(subject, deque()).append(now)

    def _wait(self, subject: str, now: float) -> float:
        times = self._failures.get(subject)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window_s - now

    def _forget_old(self, now: float) -> None:
        for subject in [s for s, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[subject]
        self._announced = {s: t for s, t in self._announced.items() if t > now - self.window_s}
        if len(self._failures) > MAX_TRACKED:  # all recent: forget them all rather than grow
            self._failures.clear()
            self._announced.clear()
