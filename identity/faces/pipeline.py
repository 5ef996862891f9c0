"""FacePipeline: images in, faces with landmarks, quality and unit embeddings out.

Detection runs image by image; the recognizer, the expensive part, runs on batches
of crops gathered across all the images of a call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from identity.config import FaceSettings, Settings
from identity.faces.align import ArcFaceAligner, align_face
from identity.faces.packs import DefaultDecision, DefaultThreshold, ModelPack, build_pack
from identity.faces.quality import assess
from identity.faces.types import DetectedFace, Detection, ImageFaces, LoadedImage, frozen_array

BATCH_SIZE = 32  # crops per recognizer call


class FacePipeline:
    def __init__(self, pack: ModelPack, faces: FaceSettings, batch_size: int = BATCH_SIZE) -> None:
        self.pack = pack
        self.faces = faces
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self.pack.model_id

    @property
    def dim(self) -> int:
        return self.pack.recognizer.dim

    @property
    def default_threshold(self) -> DefaultThreshold:
        """The pack's cosine cut until one is calibrated on the deployment's own faces."""
        return self.pack.default_threshold

    @property
    def default_decision(self) -> DefaultDecision | None:
        """The pack's threshold on the normalized decision score, where one was measured."""
        return self.pack.default_decision

    def load(self) -> None:
        """Load every model now rather than on the first image (e.g. before timing)."""
        self.pack.detector.load()
        self.pack.recognizer.load()

    def process(self, images: Sequence[LoadedImage]) -> list[ImageFaces]:
        """Every face of every image, in input order; an image without faces gets an empty tuple."""
        found = [self.pack.detector.detect(image.rgb) for image in images]
        capped = [max(0, len(detections) - self.faces.max_faces) for detections, _ in found]
        found = [(_best(detections, self.faces.max_faces), stage) for detections, stage in found]
        crops: list[np.ndarray] = []
        qualities = []
        for image, (detections, _) in zip(images, found):
            for detection in detections:
                crop = self.pack.aligner(image.rgb, detection)
                # Blur is always measured on the same 112x112 crop, so thresholds mean the same in every pack.
                arcface = (
                    crop
                    if isinstance(self.pack.aligner, ArcFaceAligner)
                    else align_face(image.rgb, detection.landmarks)
                )
                crops.append(crop)
                qualities.append(assess(detection.landmarks, detection.score, arcface, self.faces))
        embeddings = self.embed_crops(crops)
        results, index = [], 0
        for image, (detections, stage), dropped in zip(images, found, capped):
            faces = []
            for detection in detections:
                faces.append(
                    DetectedFace(
                        bbox=detection.bbox,
                        landmarks=detection.landmarks,
                        det_score=detection.score,
                        quality=qualities[index],
                        embedding=frozen_array(embeddings[index], np.float32),
                        crop=frozen_array(crops[index], np.uint8),
                        detector=detection.stage or stage,
                    )
                )
                index += 1
            limited = self.pack.detector.scan_limit_px(image.height, image.width)
            results.append(
                ImageFaces(image.path, image.sha256, image.width, image.height, tuple(faces), stage, dropped, limited)
            )
        return results

    def embed_crops(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Unit float32 embeddings (n, dim) of crops already aligned for this pack's recognizer."""
        recognizer = self.pack.recognizer
        batch = np.asarray(crops, dtype=np.uint8).reshape(-1, recognizer.input_size, recognizer.input_size, 3)
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            if self.pack.mirror:
                both = _unit(recognizer.embed(np.concatenate([chunk, chunk[:, :, ::-1]])))
                parts.append(_unit(both[: len(chunk)] + both[len(chunk) :]))
            else:
                parts.append(_unit(recognizer.embed(chunk)))
        return np.concatenate(parts)


def build_pipeline(settings: Settings, threads: int | None = None) -> FacePipeline:
    """The pipeline of the pack `settings.model` names (None: the default pack); nothing loads until first used.

    Services resolve a store's active model into `settings.model` before calling this
    (identity.app.registry); the face engine itself knows nothing of stores.

    `threads` caps the recognizer's threads (ONNX Runtime, torch); leave it None in
    a single process, set it to cores / workers in worker processes.
    """
    return FacePipeline(build_pack(settings.model, settings, threads), settings.faces)


def _best(detections: list[Detection], limit: int) -> list[Detection]:
    """The `limit` best-scored detections, in the detector's order (a cap bounds the cost of a crowd)."""
    if len(detections) <= limit:
        return detections
    keep = set(sorted(range(len(detections)), key=lambda i: detections[i].score, reverse=True)[:limit])
    return [d for i, d in enumerate(detections) if i in keep]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit
