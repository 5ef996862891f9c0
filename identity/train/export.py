"""A trained embedding network as files: a torch checkpoint and an ONNX recognizer checked against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from identity.faces.onnx_export import export_checked


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, Any]) -> Path:
    torch.save({"state_dict": model.state_dict(), "metadata": metadata}, path)
    return path


def export_recognizer(model: nn.Module, path: Path, input_size: int) -> float:
    """Write `model` as an ONNX recognizer taking float32 (n, 3, size, size) RGB 0..255; returns max |onnx - torch|."""
    return export_checked(model, torch.rand(2, 3, input_size, input_size) * 255, path)
