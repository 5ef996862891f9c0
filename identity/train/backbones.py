"""The trainable network behind a pack's recognizer, taking the pack's crops as RGB pixel values 0..255.

- dlib-resnet packs: the torch port of dlib's ResNet (150x150 dlib chips), weights from dlib's file.
- torch-iresnet packs: the arcface_torch iresnet of faces.torch_checkpoint (112x112 ArcFace crops),
  with the recognizer's (x - 127.5) / 127.5 moved inside, so its ONNX export takes pixels as every
  local pack does.
Every backbone exposes `dim` and `input_size`, and sits on the device faces.device names (training follows it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from identity.config import Settings
from identity.errors import ModelError
from identity.faces.device import Device
from identity.faces.packs import ModelPack

DLIB_CHIP, ARCFACE_112 = "dlib-chip", "arcface-112"  # local pack aligner names


class PixelIResNet(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.dim = int(network.features.num_features)
        self.input_size = 112

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - 127.5) / 127.5)


@dataclass(frozen=True)
class Backbone:
    network: nn.Module
    aligner: str  # how the pack cuts crops, as a local pack's manifest names it


def use_all_cores() -> None:
    """Training in this process uses every core (torch's default may be fewer)."""
    torch.set_num_threads(os.cpu_count() or 1)


def load_backbone(pack: ModelPack, settings: Settings) -> Backbone:
    device = Device.parse(settings.faces.device).torch_device()  # before the weights: a missing GPU fails at once
    if pack.name.startswith("dlib-resnet") and pack.weights is None:
        from identity.faces.dlib_torch import load_dlib_resnet

        return Backbone(load_dlib_resnet().to(device), DLIB_CHIP)
    if pack.name == "torch-iresnet":
        from identity.faces.iresnet import load_iresnet

        network = PixelIResNet(load_iresnet(settings.faces.torch_checkpoint, settings.faces.torch_arch))
        return Backbone(network.to(device), ARCFACE_112)
    raise ModelError(
        f"{pack.model_id} cannot be fine-tuned: start from dlib-resnet (offline, the default) or torch-iresnet "
        "(a .pth checkpoint); pin it with IDENTITY_MODEL"
    )
