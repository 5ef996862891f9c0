"""The torch-iresnet recognizer and the export of its checkpoints to ONNX."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from identity.faces.base import Recognizer
from identity.faces.device import AUTO_DEVICE, Device, torch_runs_on

logger = logging.getLogger(__name__)


class TorchIResNetRecognizer(Recognizer):
    input_size = 112

    def __init__(
        self, checkpoint: str | Path, arch: str, threads: int | None = None, device: Device = AUTO_DEVICE
    ) -> None:
        super().__init__()
        self.checkpoint = Path(checkpoint)
        self.arch = arch
        self.threads = threads
        self.device = device

    def runs_on(self) -> str:
        return torch_runs_on(self.device)

    def _load(self) -> None:
        import torch

        from identity.faces.iresnet import load_iresnet

        if self.threads:
            torch.set_num_threads(self.threads)  # per process; workers set it to cores / workers
        self._torch = torch
        self._device = self.device.torch_device()  # before the weights: a GPU that is not there fails at once
        self._model = load_iresnet(self.checkpoint, self.arch).to(self._device)
        logger.info(
            "torch iresnet %s loaded from %s on %s (%d threads)",
            self.arch,
            self.checkpoint,
            self._device,
            torch.get_num_threads(),
        )

    def _dim(self) -> int:
        return int(self._model.features.num_features)

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        batch = torch.from_numpy(np.array(crops, dtype=np.float32)).to(self._device)  # a copy: inputs may be read-only
        with torch.inference_mode():
            embeddings: np.ndarray = self._model((batch.permute(0, 3, 1, 2) - 127.5) / 127.5).cpu().numpy()
        return embeddings


def export_onnx(checkpoint: str | Path, out: str | Path, arch: str = "r50") -> Path:
    """Write the checkpoint as an ONNX recognizer (dynamic batch) and check it against torch."""
    import torch

    from identity.faces.iresnet import load_iresnet
    from identity.faces.onnx_export import export_checked

    out = Path(out)
    error = export_checked(load_iresnet(checkpoint, arch), torch.rand(2, 3, 112, 112) * 2 - 1, out)
    logger.info("exported %s (%s) to %s; max |onnx - torch| = %.2e", checkpoint, arch, out, error)
    return out
