"""Progress bars on stderr, so --json stays clean: bulk runs (enroll, worker, doctor --repair, reindex) and staged work
(eval, calibrate, finetune)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from identity_cli.output import err_console

ENROLL_OUTCOMES = ("enrolled", "rejected", "failed", "duplicate", "conflict")
_STYLE = {"enrolled": "green", "reindexed": "green", "failed": "red"}


class Tracker:
    """Counts results by their `outcome`; call it once per result."""

    def __init__(self, progress: Progress, total: int | None, label: str, outcomes: Sequence[str]) -> None:
        self._progress = progress
        self._counts = {outcome: 0 for outcome in outcomes}
        self._started = time.perf_counter()
        self._task = progress.add_task(label, total=total, rate=0.0, **self._counts)

    def __call__(self, result: object) -> None:
        outcome = result.outcome
        self._counts[outcome] = self._counts.get(outcome, 0) + 1
        done = sum(self._counts.values())
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(self._task, advance=1, rate=rate, **self._counts)

    def set_total(self, total: int) -> None:
        """For runs that learn their size as they go."""
        self._progress.update(self._task, total=total)


@contextmanager
def outcome_progress(
    total: int | None, label: str, outcomes: Sequence[str] = ENROLL_OUTCOMES, unit: str = "img"
) -> Iterator[Tracker]:
    """Yields a Tracker taking each result (JobResult, FaceOutcome); shows the rate, outcome counts and ETA."""
    counts = " ".join(
        f"[{_STYLE[o]}]{{task.fields[{o}]}} {o}[/]" if o in _STYLE else f"{{task.fields[{o}]}} {o}" for o in outcomes
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{{task.fields[rate]:.1f}} {unit}/s"),
        TextColumn(counts),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        yield Tracker(progress, total, label, outcomes)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int | None], Callable[..., None]]]:
    """Yields stage(name, total) -> advance(n, **fields): one bar per stage, its fields (e.g. a loss) beside it."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with progress:

        def stage(name: str, total: int | None) -> Callable[..., None]:
            task = progress.add_task(name, total=total, info="")

            def advance(n: int, **fields: float) -> None:
                info = "  ".join(f"{key} {value:.4f}" for key, value in fields.items())
                progress.update(task, advance=n, **({"info": info} if info else {}))

            return advance

        yield stage


@contextmanager
def download_progress(enabled: bool = True) -> Iterator[Callable[[int, int | None], None] | None]:
    """Yields progress(bytes so far, total bytes or None) drawing a transient bar on stderr; None when not `enabled`."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]downloading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task("download", total=None)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield advance
