"""`identity faces detect`: the faces in each image, with quality and rejection reasons, and their crops.

A typed report per image (unreadable images and images without a face included, in
input order), so the CLI, Python callers and the HTTP API get the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity.app.core import App
from identity.app.registry import detector_of
from identity.errors import ImageError, NoFaceFound
from identity.faces import ImageFaces, load_image
from identity.serialize import to_json


@dataclass(frozen=True)
class ImageReport:
    record: dict[str, Any]  # the image's entry, as `faces detect --json` prints it
    failure: Exception | None = None  # ImageError (unreadable) or NoFaceFound


@dataclass(frozen=True)
class DetectReport:
    model: str
    images: list[ImageReport] = field(default_factory=list)

    def as_list(self) -> list[dict[str, Any]]:
        return [image.record for image in self.images]

    def first_failure(self) -> Exception | None:
        """Image errors first: they are the more fundamental problem."""
        failures = [image.failure for image in self.images if image.failure is not None]
        return next((f for f in failures if isinstance(f, ImageError)), failures[0] if failures else None)


def detect_faces(app: App, images: Sequence[Path], crops: Path | None = None) -> DetectReport:
    choice = app.model_choice()
    pipeline = app.pipeline(choice.model)
    loaded, failed = [], {}
    for path in images:
        try:
            loaded.append(load_image(path))
        except ImageError as exc:
            failed[str(path)] = exc
    found = {result.path: result for result in pipeline.process(loaded)}
    outcomes = [(str(path), failed.get(str(path)) or found[str(path)]) for path in images]
    return detected(app, outcomes, crops)


def detected(
    app: App, outcomes: Sequence[tuple[str, ImageFaces | ImageError]], crops: Path | None = None
) -> DetectReport:
    """The report of images already analysed (the server's inference threads), each by the name it is shown as."""
    choice = app.model_choice()
    model_id = app.pipeline(choice.model).model_id
    # Which detector runs and why: the pack's detector, chosen with its model.
    chosen = {"model_source": choice.describe(), "pack_detector": detector_of(choice, app.settings)}
    reports = []
    for name, result in outcomes:
        if isinstance(result, ImageError):
            reports.append(
                ImageReport({"image": name, "error": result.reason, "faces": []}, ImageError(name, result.reason))
            )
            continue
        written = _write_crops(crops, result) if crops else []
        record = {
            "image": name,
            "sha256": result.sha256,
            "width": result.width,
            "height": result.height,
            "model": model_id,
            **chosen,
            "detector": result.detector,
            "capped": result.capped,
            "scan_limited_px": result.scan_limited_px,
            "faces": [
                {
                    "bbox": [round(v, 1) for v in face.bbox],
                    "landmarks": face.landmarks.astype(float).round(1).tolist(),
                    "detector": face.detector,
                    **to_json(face.quality),
                    "ok": face.quality.ok,
                    **({"crop": str(written[i])} if written else {}),
                }
                for i, face in enumerate(result.faces)
            ],
        }
        reports.append(ImageReport(record, None if result.faces else NoFaceFound(name)))
    return DetectReport(model_id, reports)


def _write_crops(folder: Path, result: ImageFaces) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, face in enumerate(result.faces):
        path = folder / f"{Path(result.path).stem}-{result.sha256[:8]}-{index}.png"
        Image.fromarray(face.crop).save(path)
        paths.append(path)
    return paths
