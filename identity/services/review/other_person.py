"""Enroll a searched face for the person a reviewer says it really is, from the face's stored thumbnail.

The search kept the face's aligned crop as a JPEG (identity.services.records.thumbnails), not the
photo: the crop is embedded again with the deployment's recognizer (`embed_crops`), and the JPEG is
stored as the photo in the uploads folder (erased with the person), as clustering does for kept
unknown faces. It goes through the normal queue and writer (same job states and idempotence).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from identity.app.core import App
from identity.errors import NotFound
from identity.faces import DetectedFace, ImageFaces, Quality
from identity.pathnames import path_text
from identity.services.enrollment.uploads import new_upload_folder
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import JobResult, Outcome, file_digest, process_queue, queue_jobs
from identity.services.records.thumbnails import search_thumbnails
from identity.store.sql.jobs import JobSpec

DETECTOR = "review: searched face"  # what the face row records as the stage that found it


@dataclass(frozen=True)
class Enrolled:
    """What enrolling the searched face for the actual person did."""

    outcome: str  # enrolled / duplicate / rejected / failed / conflict (the queue's job states)
    reason: str | None


def stored_face(app: App, search_id: str, face_index: int) -> bytes:
    """The stored thumbnail of a searched face; a clear NotFound when it was not kept or has expired."""
    jpeg = search_thumbnails(app, [(search_id, face_index)]).get((search_id, face_index))
    if jpeg is None:
        raise NotFound(
            f"face {face_index} of search {search_id} has no stored thumbnail (not kept, or expired): "
            "enroll a photo of them instead"
        )
    return jpeg


def enroll_searched_face(app: App, search_id: str, face_index: int, jpeg: bytes, external_id: str) -> Enrolled:
    """Enroll face `face_index` of a logged search (its stored thumbnail `jpeg`) for the person `external_id`."""
    dep = app.deployment(write=True)
    size = dep.pipeline.pack.recognizer.input_size
    stored = PILImage.open(io.BytesIO(jpeg)).convert("RGB")
    width, height = stored.size
    crop = np.asarray(stored.resize((size, size)), dtype=np.uint8)
    [vector] = dep.pipeline.embed_crops([crop])
    target = new_upload_folder(dep.settings) / f"{search_id}-{face_index}.jpg"  # erased with the person
    target.write_bytes(jpeg)
    face = DetectedFace(
        (0.0, 0.0, float(width), float(height)),
        np.zeros((5, 2), np.float32),
        0.0,  # no detector ran on the stored crop
        Quality(det_score=0.0, iod_px=0.0, blur=0.0, yaw_deg=0.0, roll_deg=0.0),
        vector,
        crop,
        DETECTOR,
    )
    found = ImageFaces(str(target), file_digest(str(target)), width, height, (face,), DETECTOR)
    batch, _ = queue_jobs(app, [JobSpec(str(target), external_id, None)])
    results: list[JobResult] = []

    def analyse(paths: Iterator[str]) -> Iterator[tuple[str, Outcome]]:
        for path in paths:
            yield path_text(path), found

    process_queue(app, EnrollmentWriter(dep, "dominant"), batch, 1, results.append, analyse=analyse)
    if not results:
        return Enrolled("failed", "the enrollment job did not run")
    return Enrolled(results[0].outcome, results[0].reason)
