"""The iResNet backbone of insightface's arcface_torch, with the same parameter names,
so its published state dicts (e.g. the glint360k CosFace R50) load unchanged.

Input: (n, 3, 112, 112) float, RGB scaled to [-1, 1]. Output: (n, 512) embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from identity.errors import ModelError

ARCHS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
EMBEDDING_DIM = 512


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (projected) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    layer1: nn.Sequential  # the four stages, set by name in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths = (64, 128, 256, 512)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip(widths, layers), start=1):
            stage = [IBasicBlock(inplanes, planes, stride=2)] + [IBasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)  # 112 px halved four times -> 7x7
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        embedding: torch.Tensor = self.features(self.fc(x))
        return embedding


def build_iresnet(arch: str) -> IResNet:
    if arch not in ARCHS:
        raise ModelError(f"unknown iresnet architecture {arch!r}; known: {', '.join(ARCHS)}")
    return IResNet(ARCHS[arch])


def load_iresnet(checkpoint: str | Path, arch: str) -> IResNet:
    """An eval-mode IResNet with the checkpoint's weights, or ModelError saying what is wrong."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelError(f"torch checkpoint {path} does not exist")
    model = build_iresnet(arch)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)  # weights only: no pickled code runs
    except Exception as exc:  # torch raises assorted types for non-checkpoint files
        raise ModelError(f"cannot read torch checkpoint {path}: {' '.join(str(exc).split())[:200]}") from None
    state = _state_dict(raw)
    guessed = guess_arch(state)
    if guessed and guessed != arch:
        raise ModelError(f"{path} holds an iresnet {guessed}, but {arch} was asked for (faces.torch_arch)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit iresnet {arch}: {' '.join(str(exc).split())[:300]}") from None
    return model.eval()


def guess_arch(state: Mapping[str, Any]) -> str | None:
    """The architecture whose block counts match the checkpoint's keys, if any."""
    counts = []
    for layer in range(1, 5):
        blocks = {int(m.group(1)) for key in state if (m := re.match(rf"layer{layer}\.(\d+)\.", key))}
        counts.append(max(blocks) + 1 if blocks else 0)
    return next((name for name, layers in ARCHS.items() if tuple(counts) == layers), None)


def _state_dict(raw: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state dict, one wrapped under "state_dict"/"model", or one saved from DataParallel."""
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelError("the checkpoint is not a state dict of tensors")
    return {key.removeprefix("module."): value for key, value in raw.items()}
