"""Analyses of labelled images cached by (model, image sha256), so a re-run of an
evaluation skips decoding, detection and embedding.

The cache is a small SQLite file under the data directory; crops are not kept (only
what metrics and enrollment need: boxes, landmarks, quality, embeddings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from identity.config import Settings
from identity.errors import ImageError
from identity.faces import ImageFaces, process_paths_parallel
from identity.faces.quality import rejections

Outcome = ImageFaces | ImageError
NO_CROP = np.zeros((0, 0, 3), dtype=np.uint8)


class AnalysisCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS analyses (model TEXT, sha256 TEXT, data BLOB, PRIMARY KEY (model, sha256))"
        )

    def get(self, model: str, sha256: str) -> ImageFaces | None:
        row = self._db.execute("SELECT data FROM analyses WHERE model = ? AND sha256 = ?", (model, sha256)).fetchone()
        return pickle.loads(row[0]) if row else None

    def put_many(self, model: str, items: Iterable[ImageFaces]) -> None:
        rows = [(model, found.sha256, pickle.dumps(_without_crops(found))) for found in items]
        self._db.executemany("INSERT OR REPLACE INTO analyses VALUES (?, ?, ?)", rows)
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def analyse_paths(
    settings: Settings, model_id: str, paths: list[str], workers: int, advance: Callable[[int], None] = lambda n: None
) -> dict[str, Outcome]:
    """Every path's analysis, from the cache where the same bytes were seen with this model."""
    cache = AnalysisCache(settings.data_dir / "cache" / "analyses.sqlite")
    results: dict[str, Outcome] = {}
    missing: list[str] = []
    try:
        for path in paths:
            try:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError as exc:
                results[path] = ImageError(path, f"cannot read file ({exc.strerror})")
                advance(1)
                continue
            cached = cache.get(model_id, digest)
            if cached is None:
                missing.append(path)
            else:
                results[path] = _regated(dataclasses.replace(cached, path=path), settings)
                advance(1)
        fresh: list[ImageFaces] = []
        for path, outcome in process_paths_parallel(settings, missing, workers):
            results[path] = outcome
            if isinstance(outcome, ImageFaces):
                fresh.append(outcome)
                if len(fresh) >= 256:
                    cache.put_many(model_id, fresh)
                    fresh = []
            advance(1)
        cache.put_many(model_id, fresh)
    finally:
        cache.close()
    return results


def _regated(found: ImageFaces, settings: Settings) -> ImageFaces:
    """The quality gate applied with today's thresholds: the cache keeps measurements, not verdicts."""
    faces = tuple(
        dataclasses.replace(f, quality=dataclasses.replace(f.quality, rejections=rejections(f.quality, settings.faces)))
        for f in found.faces
    )
    return dataclasses.replace(found, faces=faces)


def _without_crops(found: ImageFaces) -> ImageFaces:
    return dataclasses.replace(found, faces=tuple(dataclasses.replace(f, crop=NO_CROP) for f in found.faces))
