"""Face verification on lfw-dev: accuracy (10-fold), TAR@FAR=1e-3, detection failures.

    .venv/bin/python benchmarks/verification.py [--dataset DIR] [--model dlib-resnet] [--workers 2]

3,000 genuine and 3,000 impostor pairs are drawn with a fixed seed; every image is
embedded once, through the process-parallel pipeline. In each image the face nearest
the centre is LFW's subject. A pair with an image where no face was found scores -1
(it counts as "different"). "Without fallback" treats faces found only by the
detector's retry stages as not found.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from identity.config import Settings
from identity.evaluation.metrics import tar_at_far, ten_fold_accuracy
from identity.evaluation.protocol import subject_face
from identity.faces import ImageFaces, ModelPack, build_pack, process_paths_parallel
from identity.faces.dlib_models import DlibDetector, stage_label

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
MISSING = -1.0  # the score of a pair with an image without a face

Pair = tuple[Path, Path]


def people(dataset: Path) -> dict[str, list[Path]]:
    found = {d.name: sorted(d.glob("*.jpg")) for d in sorted(dataset.iterdir()) if d.is_dir()}
    return {name: images for name, images in found.items() if images}


def make_pairs(by_person: dict[str, list[Path]], count: int, seed: int) -> tuple[list[Pair], list[Pair]]:
    """`count` distinct genuine pairs (person drawn uniformly among those with 2+ images) and impostor pairs."""
    rng = random.Random(seed)
    names = sorted(by_person)
    repeated = [n for n in names if len(by_person[n]) >= 2]
    genuine: set[Pair] = set()
    while len(genuine) < count:
        a, b = sorted(rng.sample(by_person[rng.choice(repeated)], 2))
        genuine.add((a, b))
    impostor: set[Pair] = set()
    while len(impostor) < count:
        first, second = rng.sample(names, 2)
        a, b = sorted((rng.choice(by_person[first]), rng.choice(by_person[second])))
        impostor.add((a, b))
    return sorted(genuine), sorted(impostor)


def embed_all(
    settings: Settings, paths: list[Path], workers: int, console: Console
) -> dict[Path, tuple[np.ndarray | None, str]]:
    """Each image's central-face embedding (None if no face) and the detector stage that found it."""
    out: dict[Path, tuple[np.ndarray | None, str]] = {}
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("embed", total=len(paths))
        for path, outcome in process_paths_parallel(settings, paths, workers=workers):
            if isinstance(outcome, ImageFaces) and (face := subject_face(outcome)) is not None:
                out[Path(path)] = (face.embedding, outcome.detector)
            else:
                out[Path(path)] = (None, "none")
            progress.advance(task)
    return out


def pair_scores(
    pairs: list[Pair], embeddings: dict[Path, tuple[np.ndarray | None, str]], allowed: set[str] | None
) -> np.ndarray:
    def vector(path: Path) -> np.ndarray | None:
        vec, stage = embeddings[path]
        return vec if allowed is None or stage in allowed else None

    scores = []
    for a, b in pairs:
        va, vb = vector(a), vector(b)
        scores.append(MISSING if va is None or vb is None else float(va @ vb))
    return np.array(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--model", default=None, help="pack name, e.g. dlib-resnet@1 (default: settings)")
    parser.add_argument("--pairs", type=int, default=3000, help="genuine pairs, and as many impostor pairs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20240)
    args = parser.parse_args()
    console = Console()

    settings = Settings.load()
    if args.model:
        settings = settings.replace(model=args.model)
    pack = build_pack(settings.model, settings)
    primary = set(_primary_labels(pack))
    by_person = people(args.dataset)
    genuine, impostor = make_pairs(by_person, args.pairs, args.seed)
    pairs = genuine + impostor
    labels = np.array([True] * len(genuine) + [False] * len(impostor))
    paths = sorted({p for pair in pairs for p in pair})
    console.print(
        f"[bold]{pack.model_id}[/] on {args.dataset}: {len(by_person)} people, "
        f"{len(genuine)} genuine + {len(impostor)} impostor pairs over {len(paths)} images, {args.workers} workers"
    )

    start = time.perf_counter()
    embeddings = embed_all(settings, paths, args.workers, console)
    elapsed = time.perf_counter() - start

    table = Table(title=f"lfw-dev verification, {pack.model_id}")
    for column in (
        "detection",
        "accuracy (10-fold)",
        "threshold",
        "TAR@FAR=1e-3",
        "no face (images)",
        "pairs with a miss",
    ):
        table.add_column(column)
    for name, allowed in (("with fallback", None), ("without fallback", primary)):
        scores = pair_scores(pairs, embeddings, allowed)
        accuracy, std, threshold = ten_fold_accuracy(scores, labels, args.seed)
        tar, _ = tar_at_far(scores, labels, 1e-3)
        missing = sum(
            1 for vec, stage in embeddings.values() if vec is None or (allowed is not None and stage not in allowed)
        )
        table.add_row(
            name,
            f"{accuracy:.2%} ± {std:.2%}",
            f"{threshold:.3f}",
            f"{tar:.2%}",
            f"{missing}/{len(paths)} = {missing / len(paths):.2%}",
            f"{int(np.sum(scores == MISSING))}",
        )
    console.print(table)
    console.print(f"embedding time {elapsed:.0f} s, {len(paths) / elapsed:.1f} images/s")


def _primary_labels(pack: ModelPack) -> list[str]:
    """Labels of the detector's first stage (what runs without the fallback retries)."""
    detector = pack.detector
    return [stage_label(detector.stages[0])] if isinstance(detector, DlibDetector) else ["scrfd"]


if __name__ == "__main__":
    main()
