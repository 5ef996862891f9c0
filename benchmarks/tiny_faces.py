"""Are tiny faces matched on noise? FPIR and hit rate of probes shrunk to a few pixels between the eyes.

    nice -n 10 .venv/bin/python benchmarks/tiny_faces.py [--dataset DIR] [--gallery-persons 1200]
        [--probes 1000] [--seed 20250] [--workers 2] [--json]

lfw-dev's persons are split by a fixed seed: a gallery (each person's template, the
normalized mean of their photos, as search ranks them), and other persons whose first
photo is a non-mated probe. Gallery persons with 2+ photos lend their first photo as a
mated probe (their template is built from the others). Each probe's subject face is
found once at native size; the photo is then shrunk (area interpolation) so that face
has N px between the eyes and scaled back up (bilinear), so the recognizer's chip holds
only what a face of N px holds, while the landmarks stay the native ones: a best case
for alignment (a real tiny face's landmarks are noisier). Every probe is decided as
search decides (identity.evaluation.decision, the pack's calibrated default threshold).
Prints per size: FPIR (non-mated probes decided `match`) with a 95% interval, and the
mated hit rate (the right person ranked first and decided `match`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from identity.config import Settings
from identity.evaluation.decision import NORMALIZED, PERSONS_NEEDED, decision_score
from identity.evaluation.protocol import scan_labelled, subject_face
from identity.faces import DEFAULT_MODEL, ImageFaces, load_image, process_paths_parallel
from identity.faces.pipeline import FacePipeline, build_pipeline
from identity.faces.quality import inter_ocular_px
from identity.faces.types import central_face
from identity.services.templates import template_of

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
SIZES = (8, 10, 12, 14, 16, 20, 24)
NATIVE = 0  # the size key of the unshrunk probe


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


def probe_embeddings(pipeline: FacePipeline, person: str, path: str) -> Probe | None:
    image = load_image(path)
    detections, _ = pipeline.pack.detector.detect(image.rgb)
    index = central_face([d.bbox for d in detections], image.width, image.height)
    if index is None:
        return None
    detection = detections[index]
    iod = inter_ocular_px(detection.landmarks)
    sizes = [size for size in SIZES if size < iod]
    crops = [pipeline.pack.aligner(image.rgb, detection)]
    crops += [pipeline.pack.aligner(degraded(image.rgb, size / iod), detection) for size in sizes]
    vectors = pipeline.embed_crops(crops)
    return Probe(person, dict(zip([NATIVE, *sizes], vectors)), iod)


def gallery_templates(settings: Settings, folder_images: dict[str, list[str]], workers: int) -> dict[str, np.ndarray]:
    """Each gallery person's template from the subject faces of their gallery photos."""
    paths = [path for paths in folder_images.values() for path in paths]
    vectors: dict[str, np.ndarray] = {}
    for path, found in process_paths_parallel(settings, paths, workers):
        face = subject_face(found) if isinstance(found, ImageFaces) else None
        if face is not None:
            vectors[path] = face.embedding
    return {person: template_of([vectors[p] for p in paths if p in vectors])
            for person, paths in folder_images.items() if any(p in vectors for p in paths)}


def decide(matrix: np.ndarray, names: list[str], vector: np.ndarray, threshold: float) -> tuple[str, bool]:
    """(the first-ranked person, whether the decision is `match`), as search decides."""
    scores = matrix @ vector
    order = np.argsort(-scores)[:PERSONS_NEEDED]
    return names[order[0]], decision_score(scores[order].tolist(), NORMALIZED) >= threshold


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
    parser.add_argument("--gallery-persons", type=int, default=1200)
    parser.add_argument("--probes", type=int, default=1000, help="non-mated probes (one photo per other person)")
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument("--workers", type=int, default=2)
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
    gallery, others = persons[:args.gallery_persons], persons[args.gallery_persons:][:args.probes]
    mated = [p for p in gallery if len(folder.images[p]) > 1]
    # A mated probe's own photo stays out of its person's template.
    gallery_images = {p: folder.images[p][1:] if p in mated else folder.images[p] for p in gallery}
    templates = gallery_templates(settings, gallery_images, args.workers)
    names = sorted(templates)
    matrix = np.stack([templates[name] for name in names])
    rows: dict[int, dict[str, int]] = {size: {"non_mated": 0, "false_matches": 0, "mated": 0, "hits": 0}
                                       for size in (NATIVE, *SIZES)}
    iods = []
    for kind, person in [("non_mated", p) for p in others] + [("mated", p) for p in mated if p in templates]:
        probe = probe_embeddings(pipeline, person, folder.images[person][0])
        if probe is None:
            continue
        iods.append(probe.native_iod)
        for size, vector in probe.embeddings.items():
            first, matched = decide(matrix, names, vector, decision.value)
            row = rows[size]
            row[kind] += 1
            if kind == "non_mated":
                row["false_matches"] += matched
            else:
                row["hits"] += matched and first == person
    table = []
    for size, row in rows.items():
        n, m = row["non_mated"], row["mated"]
        low, high = interval(row["false_matches"], n)
        table.append({"iod_px": "native" if size == NATIVE else size, "non_mated": n,
                      "false_matches": row["false_matches"], "fpir": round(row["false_matches"] / max(n, 1), 4),
                      "fpir_95": [round(low, 4), round(high, 4)], "mated": m,
                      "hit_rate": round(row["hits"] / max(m, 1), 4)})
    summary = {"model": pipeline.model_id, "threshold": decision.value, "calibrated_fpir": decision.fpir,
               "gallery_persons": len(names), "native_iod_median": round(float(np.median(iods)), 1), "rows": table}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    out = Table(title=f"{summary['model']} at threshold {decision.value} (calibrated FPIR {decision.fpir}), "
                      f"gallery {len(names)} persons, native eye distance median {summary['native_iod_median']} px")
    for column in ("px between the eyes", "non-mated", "false matches", "FPIR", "FPIR 95%", "mated", "hit rate"):
        out.add_column(column, justify="right")
    for row in table:
        out.add_row(str(row["iod_px"]), str(row["non_mated"]), str(row["false_matches"]), f"{row['fpir']:.4f}",
                    f"{row['fpir_95'][0]:.4f}-{row['fpir_95'][1]:.4f}", str(row["mated"]), f"{row['hit_rate']:.3f}")
    Console().print(out)


if __name__ == "__main__":
    main()
