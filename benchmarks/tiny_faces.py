"""Are tiny faces matched on noise? FPIR and hit rate of probes shrunk to a few pixels between the eyes.

    nice -n 10 .venv/bin/python benchmarks/tiny_faces.py [--dataset DIR] [--gallery-persons 1500]
        [--probes 1000] [--mated 300] [--seed 20250] [--workers 2] [--redetect] [--json]

lfw-dev's persons are split by a fixed seed: a gallery (each person's template, the
normalized mean of their photos, as search ranks them), and other persons whose first
photo is a non-mated probe. Gallery persons with 2+ photos lend their first photo as a
mated probe (their template is built from the others). Each probe's subject face is
found once at native size; the photo is then shrunk (area interpolation) so that face
has N px between the eyes and scaled back up (bilinear), so the recognizer's chip holds
only what a face of N px holds, while the landmarks stay the native ones: a best case
for alignment (a real tiny face's landmarks are noisier). With --redetect the photo is
shrunk into a grey frame of its own size and the detector finds the face again, with
its own landmarks, as search would (a size where it finds none is left out). Every
probe is decided as search decides (identity.evaluation.decision, the pack's calibrated
default threshold). Prints per size: FPIR (non-mated probes decided `match`) with a
Wilson 95% interval, the mated hit rate (the right person ranked first and decided
`match`) and the mated probes decided `match` on the wrong person. The figures and the
choice of faces.min_search_iod_px are in docs/accuracy.md. On 2 busy cores
the defaults took ~15 min; --redetect with --probes 300 --mated 100 about as long.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from identity.app.templates import template_of
from identity.config import Settings
from identity.evaluation.cache import analyse_paths
from identity.evaluation.decision import NORMALIZED, PERSONS_NEEDED, decision_score
from identity.evaluation.protocol import scan_labelled, subject_face
from identity.faces import DEFAULT_MODEL, ImageFaces, load_image
from identity.faces.pipeline import FacePipeline, build_pipeline
from identity.faces.quality import inter_ocular_px
from identity.faces.types import Detection, central_face
from identity.faces.workers import run_in_workers

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
SIZES = (8, 10, 12, 14, 16, 20, 24)
NATIVE = 0  # the size key of the unshrunk probe
CHUNK_SIZE = 10  # probes per worker task


@dataclass
class Probe:
    person: str
    embeddings: dict[int, np.ndarray]  # size (px between the eyes; NATIVE) -> unit embedding
    native_iod: float


def degraded(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The photo as a camera would see it `scale` times smaller, brought back to its own size."""
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(round(width * scale), 1), max(round(height * scale), 1)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def shrunk_in_frame(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The photo `scale` times smaller, in the middle of a grey frame of its own size (a face in a wider shot)."""
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(round(width * scale), 1), max(round(height * scale), 1)), interpolation=cv2.INTER_AREA)
    frame = np.full_like(rgb, 128)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    frame[top : top + small.shape[0], left : left + small.shape[1]] = small
    return frame


def subject(pipeline: FacePipeline, rgb: np.ndarray) -> Detection | None:
    detections, _ = pipeline.pack.detector.detect(rgb)
    index = central_face([d.bbox for d in detections], rgb.shape[1], rgb.shape[0])
    return None if index is None else detections[index]


def probe_embeddings(pipeline: FacePipeline, person: str, path: str, redetect: bool) -> Probe | None:
    """The probe's subject face at native size and at each smaller size; None without a face at native size.

    redetect: the detector finds the face again at each size (its landmarks, as search would see them; a
    size where it finds none is left out), else the native landmarks on the degraded photo.
    """
    image = load_image(path)
    detection = subject(pipeline, image.rgb)
    if detection is None:
        return None
    iod = inter_ocular_px(detection.landmarks)
    crops = {NATIVE: pipeline.pack.aligner(image.rgb, detection)}
    for size in (size for size in SIZES if size < iod):
        if not redetect:
            crops[size] = pipeline.pack.aligner(degraded(image.rgb, size / iod), detection)
        elif (small := subject(pipeline, shrunk := shrunk_in_frame(image.rgb, size / iod))) is not None:
            crops[size] = pipeline.pack.aligner(shrunk, small)
    vectors = pipeline.embed_crops(list(crops.values()))
    return Probe(person, dict(zip(crops, vectors)), iod)


def probe_chunk(pipeline: FacePipeline, items: list[tuple[str, str, str, bool]]) -> list[tuple[str, Probe | None]]:
    """run_in_workers' task: (kind, person, path, redetect) -> (kind, probe)."""
    return [(kind, probe_embeddings(pipeline, person, path, redetect)) for kind, person, path, redetect in items]


def gallery_templates(
    settings: Settings, model: str, folder_images: dict[str, list[str]], workers: int
) -> dict[str, np.ndarray]:
    """Each gallery person's template from the subject faces of their gallery photos (eval's cache keeps them)."""
    paths = [path for paths in folder_images.values() for path in paths]
    vectors: dict[str, np.ndarray] = {}
    for path, found in analyse_paths(settings, model, paths, workers).items():
        face = subject_face(found) if isinstance(found, ImageFaces) else None
        if face is not None:
            vectors[path] = face.embedding
    return {
        person: template_of([vectors[p] for p in paths if p in vectors])
        for person, paths in folder_images.items()
        if any(p in vectors for p in paths)
    }


def decide(matrix: np.ndarray, names: list[str], vector: np.ndarray, threshold: float) -> tuple[str, bool]:
    """(the first-ranked person, whether the decision is `match`), as search decides."""
    scores = matrix @ vector
    order = np.argsort(-scores)[:PERSONS_NEEDED]
    return names[order[0]], decision_score(scores[order].tolist(), NORMALIZED) >= threshold


def count(
    rows: dict[int, dict[str, int]], kind: str, probe: Probe, matrix: np.ndarray, names: list[str], threshold: float
) -> None:
    for size, vector in probe.embeddings.items():
        first, matched = decide(matrix, names, vector, threshold)
        row = rows[size]
        row[kind] += 1
        if kind == "non_mated":
            row["false_matches"] += matched
        else:
            row["hits"] += matched and first == probe.person
            row["wrong_matches"] += matched and first != probe.person


def summary_line(rows: dict[int, dict[str, int]]) -> str:
    """Progress: false matches / non-mated probes per size."""
    return ", ".join(f"{size or 'native'}: {row['false_matches']}/{row['non_mated']}" for size, row in rows.items())


def interval(hits: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a proportion: meaningful at 0 hits, unlike the normal one."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.96, hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--gallery-persons", type=int, default=1500)
    parser.add_argument("--probes", type=int, default=1000, help="non-mated probes (one photo per other person)")
    parser.add_argument("--mated", type=int, default=300, help="mated probes at most")
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--redetect",
        action="store_true",
        help="detect each shrunk face again (its own landmarks) instead of aligning it with the native landmarks",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    settings = Settings.load()
    settings = settings.replace(model=settings.model or DEFAULT_MODEL)
    pipeline = build_pipeline(settings)
    decision = pipeline.default_decision
    if decision is None:
        raise SystemExit(f"{pipeline.model_id} has no calibrated default decision to measure")
    folder = scan_labelled(args.dataset)
    persons = random.Random(args.seed).sample(folder.persons, len(folder.persons))
    gallery, others = persons[: args.gallery_persons], persons[args.gallery_persons :][: args.probes]
    mated = [p for p in gallery if len(folder.images[p]) > 1]
    # A mated probe's own photo stays out of its person's template.
    gallery_images = {p: folder.images[p][1:] if p in mated else folder.images[p] for p in gallery}
    templates = gallery_templates(settings, pipeline.model_id, gallery_images, args.workers)
    names = sorted(templates)
    matrix = np.stack([templates[name] for name in names])
    rows: dict[int, dict[str, int]] = {
        size: {"non_mated": 0, "false_matches": 0, "mated": 0, "hits": 0, "wrong_matches": 0}
        for size in (NATIVE, *SIZES)
    }
    iods = []
    items = [("non_mated", p, folder.images[p][0], args.redetect) for p in others]
    items += [("mated", p, folder.images[p][0], args.redetect) for p in mated if p in templates][: args.mated]
    for _, results in run_in_workers(settings, probe_chunk, items, args.workers, CHUNK_SIZE):
        for kind, probe in results:
            if probe is not None:
                iods.append(probe.native_iod)
                count(rows, kind, probe, matrix, names, decision.value)
        print(f"{len(iods)} of {len(items)} probes: {summary_line(rows)}", file=sys.stderr, flush=True)
    table = []
    for size, row in rows.items():
        n, m = row["non_mated"], row["mated"]
        low, high = interval(row["false_matches"], n)
        table.append(
            {
                "iod_px": "native" if size == NATIVE else size,
                "non_mated": n,
                "false_matches": row["false_matches"],
                "fpir": round(row["false_matches"] / max(n, 1), 4),
                "fpir_95": [round(low, 4), round(high, 4)],
                "mated": m,
                "hit_rate": round(row["hits"] / max(m, 1), 4),
                "wrong_match_rate": round(row["wrong_matches"] / max(m, 1), 4),
            }
        )
    summary = {
        "model": pipeline.model_id,
        "threshold": decision.value,
        "calibrated_fpir": decision.fpir,
        "landmarks": "redetected at each size" if args.redetect else "native",
        "gallery_persons": len(names),
        "native_iod_median": round(float(np.median(iods)), 1),
        "rows": table,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    out = Table(
        title=f"{summary['model']} at threshold {decision.value} (calibrated FPIR {decision.fpir}), "
        f"gallery {len(names)} persons, native eye distance median {summary['native_iod_median']} px"
    )
    for column in (
        "px between the eyes",
        "non-mated",
        "false matches",
        "FPIR",
        "FPIR 95%",
        "mated",
        "hit rate",
        "wrong person",
    ):
        out.add_column(column, justify="right")
    for row in table:
        out.add_row(
            str(row["iod_px"]),
            str(row["non_mated"]),
            str(row["false_matches"]),
            f"{row['fpir']:.4f}",
            f"{row['fpir_95'][0]:.4f}-{row['fpir_95'][1]:.4f}",
            str(row["mated"]),
            f"{row['hit_rate']:.3f}",
            f"{row['wrong_match_rate']:.3f}",
        )
    Console().print(out)


if __name__ == "__main__":
    main()
