"""The progress bar of bulk runs (enroll, worker, doctor --repair), on stderr so --json stays clean."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from identity_cli.output import err_console


@contextmanager
def outcome_progress(total: int | None, label: str) -> Iterator[Callable[[object], None]]:
    """Yields a callback taking each JobResult; shows images/s, outcome counts and ETA."""
    counts = {"enrolled": 0, "rejected": 0, "failed": 0, "duplicate": 0, "conflict": 0}
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TextColumn("[green]{task.fields[enrolled]} enrolled[/] {task.fields[rejected]} rejected "
                   "[red]{task.fields[failed]} failed[/] {task.fields[duplicate]} dup {task.fields[conflict]} conflict"),
        TimeRemainingColumn(), console=err_console, transient=False,
    )
    with progress:
        task = progress.add_task(label, total=total, rate=0.0, **counts)

        def advance(result: object) -> None:
            outcome = getattr(result, "outcome")
            counts[outcome] = counts.get(outcome, 0) + 1
            done = sum(counts.values())
            progress.update(task, advance=1, rate=done / max(time.perf_counter() - started, 1e-9), **counts)

        yield advance
