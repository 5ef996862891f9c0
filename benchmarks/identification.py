"""Identification on lfw-dev through the product's enrollment and search services.

    .venv/bin/python benchmarks/identification.py [--dataset DIR] [--workers 2] [--model NAME]

Protocol (shared/datasets/README.md): gallery = first image of every person, probes =
every other image of people with 2+ images, one-image people are distractors; a probe
without a face is a miss. This is `identity eval`'s identification, run in a temporary
store; the reference system reports Top-1 86.27%, Top-5 91.18%, Top-10 92.16% on LFW.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from identity.app.core import App
from identity.config import Settings
from identity.serialize import to_json
from identity.services.accuracy.evaluate import EvalOptions, evaluate_folder

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
TARGETS = {"rank1": 0.925, "rank10": 0.983}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default=None, help="model pack (default: settings)")
    args = parser.parse_args()
    console = Console()
    settings = Settings.load()
    if args.model:
        settings = settings.replace(model=args.model)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )
    started = time.perf_counter()
    with progress:

        def stage(name, total):
            task = progress.add_task(name, total=total)
            return lambda n: progress.advance(task, n)

        with App.open(settings) as app:
            report = to_json(evaluate_folder(app, args.dataset, EvalOptions(workers=args.workers), stage))
    table = Table(title=f"identification on {args.dataset.name}, {report['model']}")
    for column in (
        "rank-1",
        "rank-5",
        "rank-10",
        "probes",
        "gallery",
        "gallery not enrolled",
        "probes without face",
        "wall s",
    ):
        table.add_column(column)
    table.add_row(
        f"{report['rank1']:.2%}",
        f"{report['rank5']:.2%}",
        f"{report['rank10']:.2%}",
        str(report["probes"]),
        str(report["gallery_persons"]),
        str(report["gallery_failed_to_enroll"]),
        str(report["failed_to_acquire"]),
        f"{time.perf_counter() - started:.0f}",
    )
    console.print(table)
    for key, target in TARGETS.items():
        console.print(f"{key}: {report[key]:.2%} (target >= {target:.1%}) {'ok' if report[key] >= target else 'BELOW'}")


if __name__ == "__main__":
    main()
