"""Bulk enrollment of lfw-dev from scratch: throughput, where the time goes, scaling.

    .venv/bin/python benchmarks/enroll.py [--limit N] [--workers 2] [--backends sqlite,postgres] [--baseline 600]
        [--models dlib-resnet,yunet-dlib-resnet] [--rounds 4] [--yunet ../shared/models/yunet_n_dynamic.onnx] [--json]

For each backend: a fresh store, `identity enroll`'s own code path (queue, process
pool, writer) over the dataset; prints images/s, faces/s and the share of wall time
spent in storage and bookkeeping (the writer, measured in the writing process).
The split of the compute into decoding, detection and alignment+embedding is
measured on a sample in one process. The scaling ratio compares the multi-process
run against a single-process run of the same pipeline on the same first --baseline
images, in this same run (--baseline 0 skips it).

With --models naming several packs, each enrolls the same images into its own fresh store,
in turns: the images are cut into --rounds chunks and pack A enrolls chunk 1, then pack B
chunk 1, then A chunk 2... so a load that comes and goes on a shared machine falls on every
pack alike; the table then has one row per pack and each pack's images/s is compared to the
first's. A pack needing YuNet gets --yunet installed into its store's data directory.

With --json the tables go to stderr and stdout gets the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from identity.app.core import open_deployment
from identity.config import Settings
from identity.faces import build_pipeline, load_image
from identity.faces.installed import YUNET
from identity.faces.packs import YUNET_MODEL, resolve
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.models.detectors import install_detector
from identity.services.queue.loop import EnrollSummary, process_queue, queue_jobs
from identity.store.sql.db import make_engine

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
YUNET_FILE = REPO.parent / "shared" / "models" / "yunet_n_dynamic.onnx"


def enroll(settings: Settings, specs: list, workers: int) -> EnrollSummary:
    started = time.perf_counter()
    with open_deployment(settings) as dep:
        batch, queued = queue_jobs(dep.app, specs)
        summary = EnrollSummary(batch=batch, queued=queued)
        process_queue(dep.app, EnrollmentWriter(dep), batch, workers, summary=summary)
    summary.seconds = time.perf_counter() - started  # wall time, start-up and model loading included
    return summary


def enroll_in_turns(stores: dict[str, Settings], specs: list, rounds: int, workers: int) -> dict[str, EnrollSummary]:
    """Each store enrolls the same chunk of `specs` in turn, chunk after chunk; their summaries summed per store."""
    totals = {label: EnrollSummary(batch="") for label in stores}
    size = -(-len(specs) // rounds)
    for start in range(0, len(specs), size):
        for label, settings in stores.items():
            part, total = enroll(settings, specs[start : start + size], workers), totals[label]
            total.seconds += part.seconds
            total.storage_seconds += part.storage_seconds
            total.faces_enrolled += part.faces_enrolled
            total.not_queued += part.not_queued
            for outcome, count in part.counts.items():
                total.counts[outcome] = total.counts.get(outcome, 0) + count
    return totals


def with_pack(settings: Settings, pack: str | None, yunet: Path) -> Settings:
    """`settings` pinned to `pack` (None: the default pack, as a new store picks it), YuNet installed where it needs
    it."""
    if pack is None:
        return settings
    if resolve(pack).name == YUNET_MODEL:
        install_detector(settings.data_dir, YUNET.name, yunet)
    return settings.replace(model=pack)


def stage_split(settings: Settings, paths: list[str]) -> dict[str, float]:
    """Seconds per image in decoding, detection and alignment+embedding, in one process."""
    pipeline = build_pipeline(settings)
    pipeline.load()
    decode = detect = total = 0.0
    for path in paths:
        t0 = time.perf_counter()
        image = load_image(path)
        t1 = time.perf_counter()
        pipeline.pack.detector.detect(image.rgb)
        t2 = time.perf_counter()
        pipeline.process([image])
        t3 = time.perf_counter()
        decode, detect, total = decode + t1 - t0, detect + t2 - t1, total + t3 - t2
    n = len(paths)
    return {"decode": decode / n, "detect": detect / n, "embed": (total - detect) / n}


def with_backend(backend: str, tmp: Path, postgres: str) -> tuple[Settings, str | None]:
    settings = Settings(data_dir=tmp)
    if backend == "sqlite":
        return settings, None
    name = f"identity_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(postgres).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return settings.replace(database_url=postgres.rsplit("/", 1)[0] + "/" + name), name


def drop(postgres: str, name: str | None) -> None:
    if name:
        admin = make_engine(postgres).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline", type=int, default=600, help="images for the 1-vs-N process comparison")
    parser.add_argument("--sample", type=int, default=150, help="images for the decode/detect/embed split")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--models", default="", help="packs to compare, comma-separated (default: the default pack)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="chunks the packs enroll in turn when --models names several"
    )
    parser.add_argument("--yunet", type=Path, default=YUNET_FILE, help="YuNet's model file, for a pack that needs it")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout (the tables on stderr)")
    args = parser.parse_args()
    console = Console(width=200, stderr=args.json)
    specs = list(from_directory(args.dataset))
    if args.limit:
        specs = specs[: args.limit]
    paths = [s.source_path for s in specs]
    figures: dict = {"images": len(specs), "workers": args.workers, "split": {}, "backends": {}}

    packs: list[str | None] = [p for p in args.models.split(",") if p] or [None]
    rounds = args.rounds if len(packs) > 1 else 1
    sample = paths[:: max(1, len(paths) // args.sample)][: args.sample]
    for pack in packs:
        with tempfile.TemporaryDirectory() as tmp:
            split = stage_split(with_pack(Settings(data_dir=Path(tmp)), pack, args.yunet), sample)
        compute = sum(split.values())
        figures["split"][pack or "default"] = split
        console.print(
            f"compute per image, one process ({pack or 'default pack'}): "
            + ", ".join(f"{k} {1000 * v:.0f} ms ({v / compute:.0%})" for k, v in split.items())
        )

    table = Table(
        title=f"enrolling {len(specs)} images of {args.dataset.name}, {args.workers} workers"
        + (f", packs in turn over {rounds} chunks" if rounds > 1 else "")
    )
    for column in ("backend", "pack", "wall s", "images/s", "faces/s", "storage+bookkeeping", "outcomes"):
        table.add_column(column)
    ratios = []
    for backend in args.backends.split(","):
        with contextlib.ExitStack() as cleanup:
            stores = {}
            for pack in packs:
                settings, name = with_backend(
                    backend, Path(cleanup.enter_context(tempfile.TemporaryDirectory())), args.postgres
                )
                cleanup.callback(drop, args.postgres, name)
                stores[pack or "default"] = with_pack(settings, pack, args.yunet)
            totals = enroll_in_turns(stores, specs, rounds, args.workers)
        for label, s in totals.items():
            figures["backends"].setdefault(backend, {})[label] = {
                "seconds": s.seconds,
                "images": s.processed,
                "images_per_s": s.processed / s.seconds,
                "faces_per_s": s.faces_enrolled / s.seconds,
                "storage_share": s.storage_seconds / s.seconds,
                "outcomes": dict(s.counts),
            }
            table.add_row(
                backend,
                label,
                f"{s.seconds:.0f}",
                f"{s.processed / s.seconds:.2f}",
                f"{s.faces_enrolled / s.seconds:.2f}",
                f"{s.storage_seconds / s.seconds:.1%}",
                ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items())),
            )
        first, *others = totals.items()
        rate = first[1].processed / first[1].seconds
        ratios += [
            f"{backend}: {label} / {first[0]} images/s {s.processed / s.seconds / rate:.2f}x" for label, s in others
        ]
    console.print(table)
    for line in ratios:
        console.print(line)

    if args.baseline:
        figures["scaling"] = scaling(specs[: args.baseline], args.workers, console)
    if args.json:
        print(json.dumps(figures, indent=2))


def scaling(base: list, workers: int, console: Console) -> dict[str, float]:
    rates = {}
    for n in (1, workers):
        with tempfile.TemporaryDirectory() as tmp:
            s = enroll(Settings(data_dir=Path(tmp)), base, n)
        rates[n] = s.processed / s.seconds
    console.print(
        f"scaling on the first {len(base)} images (embedded store): 1 process {rates[1]:.2f} images/s, "
        f"{workers} processes {rates[workers]:.2f} images/s, "
        f"ratio {rates[workers] / rates[1]:.2f}x (target >= 1.8x)"
    )
    return {
        "images": len(base),
        "one_process_images_per_s": rates[1],
        "images_per_s": rates[workers],
        "ratio": rates[workers] / rates[1],
    }


if __name__ == "__main__":
    main()
