"""Torch recognizers written as ONNX (dynamic batch) and checked against torch before they are used."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from identity.errors import ModelError
from identity.faces.onnx_session import open_session

EXPORT_OPSET = 17
EXPORT_TOLERANCE = 1e-3  # largest |onnx - torch| accepted when checking an export


def export_checked(model: Any, sample: Any, out: Path) -> float:
    """Write torch `model` to `out` with input "input" and output "embedding"; return max |onnx - torch| on `sample`."""
    import torch

    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The newer dynamo exporter needs onnxscript, which we do not ship; the TorchScript one is fine here.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Shapes are fixed per input size: constants are right. (TracerWarning is public but not in
        # torch.jit's __all__.)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (sample,),
            str(out),
            dynamo=False,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=EXPORT_OPSET,
        )
    with torch.inference_mode():
        expected = model(sample).numpy()
    got = open_session(out).run(None, {"input": sample.numpy()})[0]
    error = float(np.abs(got - expected).max())
    if error > EXPORT_TOLERANCE:
        raise ModelError(f"the ONNX export {out} differs from torch by {error:.2e}")
    return error
