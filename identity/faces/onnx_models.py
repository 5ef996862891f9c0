"""ONNX models in insightface's formats: an SCRFD/RetinaFace detector and an ArcFace/CosFace recognizer.

The detector's anchor decoding and NMS are insightface's own (its SCRFD class, fed
our session); the recognizer is ours, so it can run whole batches.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from identity.errors import ModelError
from identity.faces.base import Detector, Recognizer
from identity.faces.device import AUTO_DEVICE, Device, onnx_runs_on
from identity.faces.onnx_session import open_session
from identity.faces.types import Detection, frozen_array

logger = logging.getLogger(__name__)

DET_INPUT_SIZE = (640, 640)
DET_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4


class ScrfdDetector(Detector):
    """SCRFD or RetinaFace with 5 key points (9 or 15 outputs), as insightface exports them."""

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        input_size: tuple[int, int] = DET_INPUT_SIZE,
        device: Device = AUTO_DEVICE,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        self.input_size = input_size
        self.device = device

    def runs_on(self) -> str:
        return onnx_runs_on(self.device)

    def _load(self) -> None:
        session = open_session(self.path, self.threads, self.device)
        if len(session.get_outputs()) not in (9, 15):
            raise ModelError(
                f"{self.path} has {len(session.get_outputs())} outputs; an SCRFD/RetinaFace detector "
                "with key points has 9 or 15"
            )
        from insightface.model_zoo.scrfd import SCRFD

        # static_shape_sessions=False: keep our one session instead of per-size clones.
        self._model = SCRFD(model_file=str(self.path), session=session, static_shape_sessions=False)
        self._model.prepare(0, input_size=self.input_size, det_thresh=DET_THRESHOLD, nms_thresh=NMS_THRESHOLD)

    def _detect(self, rgb: np.ndarray) -> tuple[list[Detection], str]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # insightface models take OpenCV's BGR order
        boxes, points = self._model.detect(bgr)
        height, width = rgb.shape[:2]
        found = [
            Detection(
                bbox=(
                    float(max(box[0], 0)),
                    float(max(box[1], 0)),
                    float(min(box[2], width)),
                    float(min(box[3], height)),
                ),
                landmarks=frozen_array(kps, np.float32),
                score=float(box[4]),
            )
            for box, kps in zip(boxes, points)
        ]
        return found, "scrfd" if found else "none"


class OnnxArcFaceRecognizer(Recognizer):
    """An insightface-style recognizer: (n, 3, 112, 112) RGB in, (n, dim) out."""

    input_size = 112  # the ArcFace template's crop; other sizes are refused, not silently resized

    def __init__(self, path: str | Path, threads: int | None = None, device: Device = AUTO_DEVICE) -> None:
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        self.device = device

    def runs_on(self) -> str:
        return onnx_runs_on(self.device)

    def _load(self) -> None:
        import onnx

        session = open_session(self.path, self.threads, self.device)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        shape = inputs[0].shape
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4:
            raise ModelError(f"{self.path} is not a recognizer: expected one (n, 3, h, w) input and one output")
        if any(isinstance(side, int) and side != self.input_size for side in shape[2:]):
            raise ModelError(
                f"{self.path} takes {shape[2]}x{shape[3]} crops; only {self.input_size}x{self.input_size} is supported"
            )
        width = outputs[0].shape[-1]
        if not isinstance(width, int):
            raise ModelError(f"{self.path}: the embedding size is not fixed in the model")
        self._session = session
        self._input = inputs[0].name
        self._width = width
        self._batch = shape[0] if isinstance(shape[0], int) else None  # None: any batch size
        # Models converted from MXNet normalise inside the graph (a Sub and a Mul up
        # front); the others expect (x - 127.5) / 127.5 — insightface's own rule.
        names = [node.name for node in onnx.load(str(self.path), load_external_data=False).graph.node[:8]]
        in_graph = any(n.startswith(("Sub", "_minus")) for n in names) and any(
            n.startswith(("Mul", "_mul")) for n in names
        )
        self._mean, self._std = (0.0, 1.0) if in_graph else (127.5, 127.5)
        logger.info("ONNX recognizer %s: %d-d, mean %s std %s", self.path.name, width, self._mean, self._std)

    def _dim(self) -> int:
        return self._width

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        blob = (np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2) - self._mean) / self._std
        step = self._batch or len(blob)
        parts = [self._session.run(None, {self._input: blob[i : i + step]})[0] for i in range(0, len(blob), step)]
        return np.concatenate(parts).reshape(len(blob), -1)


class OnnxPixelRecognizer(Recognizer):
    """A local pack's recognizer: (n, 3, size, size) RGB pixel values 0..255 in, (n, dim) out.

    Unlike insightface exports, these graphs normalise their input themselves, so the
    crops go in as plain float pixels.
    """

    def __init__(
        self, path: str | Path, input_size: int, dim: int, threads: int | None = None, device: Device = AUTO_DEVICE
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.input_size = input_size
        self.expected_dim = dim
        self.threads = threads
        self.device = device

    def runs_on(self) -> str:
        return onnx_runs_on(self.device)

    def _load(self) -> None:
        session = open_session(self.path, self.threads, self.device)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        shape, width = inputs[0].shape, outputs[0].shape[-1]
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4:
            raise ModelError(f"{self.path} is not a recognizer: expected one (n, 3, h, w) input and one output")
        if any(isinstance(side, int) and side != self.input_size for side in shape[2:]):
            raise ModelError(f"{self.path} takes {shape[2]}x{shape[3]} crops; its pack.json says {self.input_size}")
        if isinstance(width, int) and width != self.expected_dim:
            raise ModelError(f"{self.path} produces {width}-d embeddings; its pack.json says {self.expected_dim}")
        self._session = session
        self._input = inputs[0].name
        logger.info(
            "ONNX pixel recognizer %s: %d-d, %dx%d crops",
            self.path.name,
            self.expected_dim,
            self.input_size,
            self.input_size,
        )

    def _dim(self) -> int:
        return self.expected_dim

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        blob = np.ascontiguousarray(np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2))
        embeddings: np.ndarray = self._session.run(None, {self._input: blob})[0].reshape(len(blob), -1)
        return embeddings
