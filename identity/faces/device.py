"""Where models run: faces.device (auto, cpu, cuda or cuda:N) as a torch device and as ONNX Runtime providers.

One adapter for both engines, so a setting means the same for every recognizer:
- cpu: the CPU only;
- auto: CUDA when the engine has it (torch: a GPU it sees; ONNX Runtime: its CUDA provider), else the CPU, silently;
- cuda / cuda:N: that GPU, or a one-line ModelError saying why it cannot be used (never a silent CPU fallback).
dlib's HOG and OpenCV's YuNet have no device choice: they run on the CPU whatever this says.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from identity.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

AUTO, CPU, CUDA = "auto", "cpu", "cuda"
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"
SETTING = "IDENTITY_FACES__DEVICE"  # the variable named in errors (faces.device in the config file)
# An ONNX Runtime provider as InferenceSession takes it: a name, or a name and its options.
Provider = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Device:
    """A parsed faces.device: its kind and, for cuda:N, the GPU's ordinal (None: the first)."""

    kind: str
    index: int | None = None

    @classmethod
    def parse(cls, text: str) -> Device:
        """The device a setting names; ConfigError for anything but auto, cpu, cuda and cuda:N."""
        match = re.fullmatch(r"(auto|cpu|cuda)(?::(\d+))?", text.strip().lower())
        if match is None or (match[2] is not None and match[1] != CUDA):
            raise ConfigError(f"{SETTING}: {text!r} is not a device (expected auto, cpu, cuda or cuda:N)")
        return cls(match[1], int(match[2]) if match[2] is not None else None)

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def ordinal(self) -> int:
        """The CUDA ordinal this device means when it means a GPU (cuda and auto: the first)."""
        return self.index or 0

    def torch_device(self) -> torch.device:
        """The torch device to move modules and tensors to; ModelError when cuda is asked and torch cannot use it."""
        import torch

        if self.kind == CPU:
            return torch.device(CPU)
        available = torch.cuda.is_available()
        if self.kind == AUTO:
            return torch.device(CUDA, 0) if available else torch.device(CPU)
        if not available:
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ModelError(
                f"{SETTING} is {self} but torch sees no CUDA device (torch {torch.__version__}, {built}); "
                "use cpu or auto"
            )
        count = torch.cuda.device_count()
        if self.ordinal >= count:
            raise ModelError(f"{SETTING} is {self} but torch sees {count} CUDA device(s) (0 to {count - 1})")
        return torch.device(CUDA, self.ordinal)

    def onnx_providers(self, available: Collection[str]) -> list[Provider]:
        """The providers list for an InferenceSession, given onnxruntime.get_available_providers()."""
        has_cuda = CUDA_PROVIDER in available
        if self.kind == CPU or (self.kind == AUTO and not has_cuda):
            return [CPU_PROVIDER]
        if not has_cuda:
            raise ModelError(
                f"{SETTING} is {self} but onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu); use cpu or auto"
            )
        # The CPU provider stays last: ONNX Runtime runs there only the operators CUDA lacks.
        return [(CUDA_PROVIDER, {"device_id": self.ordinal}), CPU_PROVIDER]

    def requires_cuda(self) -> bool:
        """Whether a CPU-only session would break this setting's promise (cuda asked by name)."""
        return self.kind == CUDA


AUTO_DEVICE = Device(AUTO)  # the default of faces.device, for models built outside a pack (tests, exports)


def torch_runs_on(device: Device) -> str:
    """What a torch model with this setting runs on, for `identity version`: resolves, loads nothing."""
    try:
        return f"{device.torch_device()} (torch, faces.device {device})"
    except ModelError as exc:
        return f"unavailable: {exc.message}"


def onnx_runs_on(device: Device) -> str:
    """What an ONNX model with this setting runs on, for `identity version`: its providers, loads nothing."""
    import onnxruntime as ort

    try:
        providers = device.onnx_providers(ort.get_available_providers())
    except ModelError as exc:
        return f"unavailable: {exc.message}"
    names = [f"{p[0]} (device {p[1]['device_id']})" if isinstance(p, tuple) else p for p in providers]
    return f"onnxruntime {', '.join(names)} (faces.device {device})"
