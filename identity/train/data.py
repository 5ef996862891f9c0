"""Training data: one aligned chip per labelled face, from a labelled folder or the store.

Chips are what the recognizer sees (dlib's 150x150 chip for the dlib packs), cut in
worker processes that run only the detector and aligner. They are cached under the
data directory by a digest of the inputs (paths, sizes, mtimes, boxes), so a second
fine-tuning run on the same photos starts training at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from identity.config import Settings
from identity.errors import IdentityError, ImageError
from identity.evaluation.protocol import scan_labelled
from identity.faces.images import load_image
from identity.faces.packs import ModelPack
from identity.faces.pipeline import FacePipeline, build_pipeline
from identity.faces.types import central_face, same_face
from identity.faces.workers import run_in_workers

Box = tuple[float, float, float, float]
# One face to cut: the image, its label, and the stored box to match (None: the face nearest the centre).
FaceRef = tuple[str, str, Box | None]
CHUNK = 16


@dataclass
class ChipSet:
    chips: np.ndarray  # (n, size, size, 3) uint8 RGB
    labels: np.ndarray  # (n,) int64 index into persons
    persons: list[str]
    paths: list[str]
    skipped: list[tuple[str, str]]  # (path, reason) of faces that yielded no chip

    def __len__(self) -> int:
        return len(self.labels)


def folder_faces(folder: Path) -> list[FaceRef]:
    """The subject face (nearest the centre) of every image of a PERSON/IMAGE folder."""
    labelled = scan_labelled(folder)
    return [(path, person, None) for person in labelled.persons for path in labelled.images[person]]


def collect_chips(settings: Settings, refs: Sequence[FaceRef], workers: int, advance: Callable[[int], None]) -> ChipSet:
    """Chips of the given faces, from the cache when the same inputs were cut before."""
    pack = build_pipeline(settings).pack  # nothing loads; its id names the cache (weights digest included)
    cache = _cache_path(pack.model_id, settings.data_dir, refs)
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            advance(len(refs))
            meta = json.loads(str(stored["meta"]))
            return ChipSet(
                stored["chips"], stored["labels"], meta["persons"], meta["paths"], [tuple(s) for s in meta["skipped"]]
            )
    cut = _cut_all(settings, list(refs), workers, advance)
    kept = [(ref, chip) for ref, chip in zip(refs, cut) if not isinstance(chip, str)]
    skipped = [(ref[0], chip) for ref, chip in zip(refs, cut) if isinstance(chip, str)]
    persons = sorted({ref[1] for ref, _ in kept})
    index = {person: i for i, person in enumerate(persons)}
    size = pack.recognizer.input_size
    chips = np.stack([chip for _, chip in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
    result = ChipSet(
        chips,
        np.array([index[ref[1]] for ref, _ in kept], dtype=np.int64),
        persons,
        [ref[0] for ref, _ in kept],
        skipped,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    meta = json.dumps({"persons": result.persons, "paths": result.paths, "skipped": result.skipped})
    np.savez(partial, chips=result.chips, labels=result.labels, meta=np.array(meta))
    os.replace(partial, cache)
    return result


def _cache_path(model_id: str, data_dir: Path, refs: Sequence[FaceRef]) -> Path:
    digest = hashlib.sha256(model_id.encode())
    for path, person, box in refs:
        try:
            stat = os.stat(path)
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{path}\0{person}\0{box}\0{stamp}\n".encode())
    return data_dir / "cache" / "chips" / f"{digest.hexdigest()[:24]}.npz"


def _cut_all(
    settings: Settings, refs: list[FaceRef], workers: int, advance: Callable[[int], None]
) -> list[np.ndarray | str]:
    results: list[np.ndarray | str] = []
    # One thread per worker: cutting is detection-bound and the workers already use every core.
    for chunk, done in run_in_workers(settings, _cut_chunk, refs, workers or settings.worker_count, CHUNK, threads=1):
        results += done
        advance(len(chunk))
    return results


def _cut_chunk(pipeline: FacePipeline, refs: list[FaceRef]) -> list[np.ndarray | str]:
    return [_cut(pipeline.pack, path, box) for path, _, box in refs]


def _cut(pack: ModelPack, path: str, box: Box | None) -> np.ndarray | str:
    """The chip of the wanted face, or the reason there is none."""
    try:
        image = load_image(path)
    except ImageError as exc:
        return exc.reason
    detections, _ = pack.detector.detect(image.rgb)
    if not detections:
        return "no face found"
    boxes = [d.bbox for d in detections]
    index = central_face(boxes, image.width, image.height) if box is None else same_face(boxes, box)
    if index is None:
        return "the enrolled face is no longer found"
    return np.ascontiguousarray(pack.aligner(image.rgb, detections[index]))


def require_enough(chips: ChipSet, source: str) -> None:
    if len(chips.persons) < 4:
        raise IdentityError(f"{source}: {len(chips.persons)} persons with a usable face; fine-tuning needs at least 4")
