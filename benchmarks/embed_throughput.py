"""Throughput of the face pipeline on lfw-dev images, against a naive one-image-at-a-time loop.

    .venv/bin/python benchmarks/embed_throughput.py [--dataset DIR] [--images 500] [--workers 2]

Both runs use the same pack and the same images. The pipeline run is the bulk path
(process_paths_parallel: worker processes, chunks of images, batched recognizer)
and its time includes starting the workers and loading their models. The naive
loop loads the model first (not timed), then reads and processes one image per call.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from identity.config import Settings
from identity.faces import ImageFaces, build_pipeline, load_image, process_paths_parallel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"


def progress(console: Console, label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console)


def run_pipeline(settings: Settings, paths: list[Path], workers: int, console: Console) -> tuple[float, int]:
    faces = 0
    with progress(console, f"pipeline, {workers} workers") as bar:
        task = bar.add_task("", total=len(paths))
        start = time.perf_counter()
        for _, outcome in process_paths_parallel(settings, paths, workers=workers):
            faces += len(outcome.faces) if isinstance(outcome, ImageFaces) else 0
            bar.advance(task)
        return time.perf_counter() - start, faces


def run_naive(settings: Settings, paths: list[Path], console: Console) -> tuple[float, int]:
    pipeline = build_pipeline(settings)
    pipeline.load()
    faces = 0
    with progress(console, "naive loop, 1 process") as bar:
        task = bar.add_task("", total=len(paths))
        start = time.perf_counter()
        for path in paths:
            [result] = pipeline.process([load_image(path)])
            faces += len(result.faces)
            bar.advance(task)
        return time.perf_counter() - start, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--model", default=None, help="pack name (default: settings)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    console = Console()

    settings = Settings.load()
    if args.model:
        settings = settings.replace(model=args.model)
    paths = sorted(random.Random(args.seed).sample(sorted(args.dataset.glob("*/*.jpg")), args.images))
    console.print(f"[bold]{build_pipeline(settings).model_id}[/] on {len(paths)} images from {args.dataset}")

    pipeline_s, pipeline_faces = run_pipeline(settings, paths, args.workers, console)
    naive_s, naive_faces = run_naive(settings, paths, console)

    table = Table(title="embedding throughput")
    for column in ("run", "seconds", "images/s", "faces/s", "faces"):
        table.add_column(column)
    for name, seconds, faces in (
        (f"pipeline ({args.workers} workers, batched)", pipeline_s, pipeline_faces),
        ("naive loop (1 image per call)", naive_s, naive_faces),
    ):
        table.add_row(name, f"{seconds:.1f}", f"{len(paths) / seconds:.2f}", f"{faces / seconds:.2f}", str(faces))
    console.print(table)
    console.print(f"pipeline / naive: [bold]{naive_s / pipeline_s:.2f}x[/]")


if __name__ == "__main__":
    main()
