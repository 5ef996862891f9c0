"""Does a threshold calibrated by FPIR on one gallery hold on another of a different size?

    .venv/bin/python benchmarks/fpir_transfer.py [--dataset DIR] [--fpir 0.01] [--seed 20240] [--workers 0]

lfw-dev's persons are split by a fixed seed into A (1,400) and B (the rest, 1,448).
The threshold is calibrated on A as `identity calibrate --fpir` does (the service's
fpir_calibration, eval's open-set protocol), without touching any store. Then, with the
same protocol on B (each probe searched once with its own person in the gallery and
once without), it counts the non-mated searches that the threshold calls a match, with
all of B as the gallery and with a seeded random quarter of B's persons. Prints the
observed FPIR, its ratio to the asked one (target: within a factor of 2) and the FNIR.
Analyses come from eval's cache (IDENTITY_DATA_DIR), so run `identity eval` first.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from rich.console import Console
from rich.table import Table

from identity.app.core import App
from identity.config import Settings
from identity.evaluation.cache import analyse_paths
from identity.evaluation.protocol import LabelledFolder, scan_labelled
from identity.faces import FacePipeline, default_model
from identity.services.accuracy.evaluate import EvalOptions, OpenSetSearches, fpir_calibration, open_set_searches

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
SIZE_A = 1400


def split(folder: LabelledFolder, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(A, B, a quarter of B): sorted person lists drawn with `seed`."""
    shuffled = random.Random(seed).sample(folder.persons, len(folder.persons))
    a, b = sorted(shuffled[:SIZE_A]), sorted(shuffled[SIZE_A:])
    return a, b, sorted(random.Random(seed + 1).sample(b, len(b) // 4))


def searches_on(app: App, pipeline: FacePipeline, folder: LabelledFolder, options: EvalOptions) -> OpenSetSearches:
    settings = app.settings
    analyses = analyse_paths(settings, pipeline.model_id, folder.all_paths, options.workers or settings.worker_count)
    return open_set_searches(app, pipeline, folder, analyses, options)


def row(name: str, searches: OpenSetSearches, threshold: float, fpir: float) -> dict[str, object]:
    observed = searches.observed_fpir(threshold)
    matches = round(observed * len(searches.non_mated))
    n = len(searches.non_mated)
    spread = 1.96 * math.sqrt(max(observed * (1 - observed), 0.0) / max(n, 1))
    return {
        "gallery": name,
        "gallery_persons": searches.gallery_persons,
        "non_mated_searches": n,
        "non_mated_matches": matches,
        "observed_fpir": round(observed, 4),
        "fpir_95": [round(max(observed - spread, 0.0), 4), round(observed + spread, 4)],
        "ratio_to_asked": round(observed / fpir, 2),
        "fnir": round(searches.observed_fnir(threshold), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--fpir", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    settings = Settings.load()
    settings = settings.replace(model=settings.model or default_model(settings)[0])  # as eval: the configured pack
    folder = scan_labelled(args.dataset)
    a, b, quarter = split(folder, args.seed)
    options = EvalOptions(workers=args.workers)
    with App.open(settings) as app:  # its store is never touched: each gallery goes into a scratch one
        pipeline = app.pipeline()
        calibration = fpir_calibration(app, pipeline, folder.subset(a), args.fpir, options)
        threshold = calibration.threshold.threshold
        rows = [row("A (calibration)", calibration.searches, threshold, args.fpir)]
        for name, persons in (("B", b), ("quarter of B", quarter)):
            rows.append(row(name, searches_on(app, pipeline, folder.subset(persons), options), threshold, args.fpir))
    if args.json:
        print(json.dumps({"fpir": args.fpir, "threshold": round(threshold, 6), "rows": rows}, indent=2))
        return
    table = Table(
        title=f"threshold {threshold:.4f} calibrated at FPIR {args.fpir:g} on A "
        f"({calibration.threshold.impostors} non-mated searches)"
    )
    for column in ("gallery", "persons", "non-mated", "matches", "FPIR", "95%", "x asked", "FNIR"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["gallery"]),
            str(r["gallery_persons"]),
            str(r["non_mated_searches"]),
            str(r["non_mated_matches"]),
            f"{r['observed_fpir']:.4f}",
            f"{r['fpir_95'][0]:.4f}..{r['fpir_95'][1]:.4f}",
            f"{r['ratio_to_asked']:.2f}",
            f"{r['fnir']:.4f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
