"""Prometheus text exposition for `/metrics`: requests and latencies per route, searches by decision."""

from __future__ import annotations

import threading
from collections import defaultdict

from identity.services.search.log import DECISIONS

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[float]] = {}  # per bucket counts, then sum, then count
        self._decisions: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            row = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += seconds
            row[-1] += 1

    def decision(self, decision: str) -> None:
        with self._lock:
            self._decisions[decision] += 1

    def render(self, queue_depth: dict[str, int]) -> str:
        lines = [
            "# HELP identity_http_requests_total HTTP requests by route and status.",
            "# TYPE identity_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, code), requests in sorted(self._requests.items()):
                lines.append(
                    f'identity_http_requests_total{{method="{method}",route="{route}",status="{code}"}} {requests}'
                )
            lines += [
                "# HELP identity_http_request_seconds Request latency by route.",
                "# TYPE identity_http_request_seconds histogram",
            ]
            for (method, route), row in sorted(self._latency.items()):
                labels = f'method="{method}",route="{route}"'
                for bound, n in zip(BUCKETS, row):
                    lines.append(f'identity_http_request_seconds_bucket{{{labels},le="{bound}"}} {int(n)}')
                lines.append(f'identity_http_request_seconds_bucket{{{labels},le="+Inf"}} {int(row[-1])}')
                lines.append(f"identity_http_request_seconds_sum{{{labels}}} {row[-2]:.6f}")
                lines.append(f"identity_http_request_seconds_count{{{labels}}} {int(row[-1])}")
            lines += [
                "# HELP identity_search_faces_total Faces of searched photos, by decision (not_searched: too small).",
                "# TYPE identity_search_faces_total counter",
            ]
            for decision in sorted(set(self._decisions) | set(DECISIONS)):
                lines.append(f'identity_search_faces_total{{decision="{decision}"}} {self._decisions[decision]}')
        lines += ["# HELP identity_jobs Jobs in the queue, by status.", "# TYPE identity_jobs gauge"]
        for status, n in sorted(queue_depth.items()):
            lines.append(f'identity_jobs{{status="{status}"}} {n}')
        return "\n".join(lines) + "\n"
