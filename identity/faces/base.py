"""The three model kinds a pack is made of, each loading its weights lazily, once.

Subclasses implement `_load()` and one inference method; callers never call
`load()` themselves unless they want to pay the cost up front.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from identity.faces.types import Detection


class LazyModel:
    """Loads on first use under a lock; `load()` is idempotent and thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        raise NotImplementedError


class Detector(LazyModel):
    """Finds faces and their 5 landmarks in an RGB image."""

    def detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        """The faces found and the label of the detection stage that found them ("none" if none)."""
        self.load()
        return self._detect(rgb)

    def _detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        raise NotImplementedError

    def runs_on(self) -> str:
        """Where it runs, for `identity version`, loading nothing. In-process CPU code unless a subclass says
        otherwise."""
        return "cpu"

    def scan_limit_px(self, height: int, width: int) -> float | None:
        """The smallest face height it can look for in a photo this size when its time budget raises that
        above the wanted minimum (faces.min_face_px); None: not limited (or the detector has no budget)."""
        return None


class Recognizer(LazyModel):
    """Turns aligned square RGB crops into raw (not yet normalised) embeddings."""

    input_size: int  # side of the square crop it expects

    @property
    def dim(self) -> int:
        self.load()
        return self._dim()

    def runs_on(self) -> str:
        """Where it runs (a torch device or ONNX Runtime providers), for `identity version`, loading nothing."""
        return "cpu"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 RGB crops -> (n, dim) float32."""
        self.load()
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._embed(crops), dtype=np.float32)

    def _dim(self) -> int:
        raise NotImplementedError

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Aligner(Protocol):
    """Cuts the crop a recognizer expects out of an image, given a detection."""

    size: int

    def __call__(self, rgb: np.ndarray, detection: Detection) -> np.ndarray: ...
