"""The one place that opens ONNX Runtime sessions: providers (from faces.device) and threads decided and logged here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from identity.errors import ModelError
from identity.faces.device import AUTO, AUTO_DEVICE, CUDA_PROVIDER, Device

logger = logging.getLogger(__name__)


def open_session(path: str | Path, threads: int | None = None, device: Device = AUTO_DEVICE) -> Any:
    """An onnxruntime.InferenceSession on the providers `device` gives; ModelError if the file is unusable.

    `threads` caps intra-op threads (set it in worker processes so that N workers
    do not each start one thread per core). A device asked for by name (cuda:N) that
    the session cannot use is a ModelError; auto runs on the CPU then.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = set(ort.get_available_providers())
    providers = device.onnx_providers(available)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind types for bad files
        raise ModelError(f"cannot load ONNX model {path}: {' '.join(str(exc).split())[:300]}") from None
    active = session.get_providers()
    logger.info("onnxruntime %s: providers %s, intra-op threads %s", path.name, active, threads or "default")
    if CUDA_PROVIDER in available and CUDA_PROVIDER not in active:
        if device.requires_cuda():  # ONNX Runtime falls back to the CPU when CUDA fails to start: not for cuda:N
            raise ModelError(
                f"onnxruntime could not start {CUDA_PROVIDER} on device {device.ordinal} "
                f"for {path.name} (faces.device {device}); its log says why"
            )
        if device.kind == AUTO:
            logger.warning("onnxruntime %s: CUDA is installed but not in use; running on CPU", path.name)
    return session
