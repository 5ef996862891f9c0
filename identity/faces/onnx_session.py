"""The one place that opens ONNX Runtime sessions: providers and threads decided and logged here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from identity.errors import ModelError

logger = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime.InferenceSession on the best available provider; ModelError if the file is unusable.

    `threads` caps intra-op threads (set it in worker processes so that N workers
    do not each start one thread per core).
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
    providers = [p for p in PREFERRED_PROVIDERS if p in available]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind types for bad files
        raise ModelError(f"cannot load ONNX model {path}: {' '.join(str(exc).split())[:300]}") from None
    active = session.get_providers()
    logger.info("onnxruntime %s: providers %s, intra-op threads %s", path.name, active, threads or "default")
    if "CUDAExecutionProvider" in available and "CUDAExecutionProvider" not in active:
        logger.warning("onnxruntime %s: CUDA is installed but not in use; running on CPU", path.name)
    return session
