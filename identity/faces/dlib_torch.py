"""dlib's face recognition ResNet in PyTorch, with the weights of the installed dlib model file.

The weights are read from face_recognition_models' .dat at run time (nothing
converted is stored), so the default pack's recognizer can be fine-tuned offline.
The network (dlib's dnn_face_recognition_ex): a 7x7/2 convolution and 3x3/2 max
pool, then 14 residual blocks (29 convolutions in all) at 32 to 256 channels whose downsampling
blocks add a 2x2 average pool of their input, then a global average and a 128-d
linear map. Two dlib details matter for agreement:
- strided convolutions have no padding, so a downsampling block's two branches can
  differ in size (3x3 against 4x4 at 8x8 input); dlib adds them zero-padded at the
  bottom and right, and the extra channels of the wider branch likewise;
- the input is (pixel - per-channel mean) / 256, RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from identity.errors import ModelError
from identity.faces.dlib_format import DlibLayer, read_dlib_network

INPUT_SIZE = 150
_BLOCK = ("con", "affine", "relu", "con", "affine", "add_prev", "relu")
_DOWN_BLOCK = ("con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu")


class Affine(nn.Module):
    """Per-channel scale and shift: dlib's inference form of batch normalisation."""

    def __init__(self, params: np.ndarray) -> None:
        super().__init__()
        gamma, beta = np.split(params, 2)
        self.weight = nn.Parameter(torch.from_numpy(gamma.copy()))
        self.bias = nn.Parameter(torch.from_numpy(beta.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def _conv(layer: DlibLayer, in_channels: int) -> nn.Conv2d:
    filters, rows, cols, stride_y, stride_x, pad_y, pad_x = layer.ints
    conv = nn.Conv2d(in_channels, filters, (rows, cols), (stride_y, stride_x), (pad_y, pad_x))
    weights = layer.params[: filters * in_channels * rows * cols]
    if weights.size + filters != layer.params.size:
        raise ModelError(f"convolution weights do not fit {filters}x{in_channels}x{rows}x{cols}")
    assert conv.bias is not None  # Conv2d has one by default
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights.reshape(filters, in_channels, rows, cols)))
        conv.bias.copy_(torch.from_numpy(layer.params[weights.size :]))
    return conv


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, each zero-padded at the end of channels, rows and columns to the larger size."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def grow(t: torch.Tensor) -> torch.Tensor:
        missing = [want - have for want, have in zip(shape, t.shape[1:])]
        if not any(missing):
            return t
        return F.pad(t, (0, missing[2], 0, missing[1], 0, missing[0]))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    def __init__(self, layers: list[DlibLayer], in_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(layers[0], in_channels)
        self.affine1 = Affine(layers[1].params)
        self.conv2 = _conv(layers[3], self.conv1.out_channels)
        self.affine2 = Affine(layers[4].params)
        self.downsample = layers[5].kind == "avg_pool"
        self.out_channels = self.conv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(_add_padded(y, skip))


class DlibResNet(nn.Module):
    """uint8-range RGB (n, 3, 150, 150) float chips in, 128-d descriptors out (not unit length)."""

    input_size = INPUT_SIZE
    mean: torch.Tensor  # a buffer: the per-channel input means

    def __init__(self, layers: list[DlibLayer]) -> None:
        super().__init__()
        kinds = [layer.kind for layer in layers]
        if kinds[:5] != ["input", "con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
            raise ModelError("not dlib's face recognition ResNet: unexpected stem or head")
        means = layers[0].floats
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem_conv = _conv(layers[1], 3)
        self.stem_affine = Affine(layers[2].params)
        pool = layers[4].ints
        self.stem_pool = nn.MaxPool2d((pool[0], pool[1]), (pool[2], pool[3]), (pool[4], pool[5]))
        self.blocks = nn.ModuleList()
        channels, position, body_end = self.stem_conv.out_channels, 5, len(layers) - 2
        while position < body_end:
            for pattern in (_BLOCK, _DOWN_BLOCK):
                if tuple(kinds[position : position + len(pattern)]) == pattern:
                    block = ResidualBlock(layers[position : position + len(pattern)], channels)
                    self.blocks.append(block)
                    channels, position = block.out_channels, position + len(pattern)
                    break
            else:
                raise ModelError(
                    f"not dlib's face recognition ResNet: unexpected layers at {position}"
                    f": {kinds[position : position + 3]}"
                )
        outputs, inputs, has_bias = layers[-1].ints
        if inputs != channels:
            raise ModelError(f"the final layer takes {inputs} inputs, the blocks give {channels}")
        self.fc = nn.Linear(inputs, outputs, bias=bool(has_bias))
        with torch.no_grad():
            weights = layers[-1].params[: inputs * outputs].reshape(inputs, outputs)  # dlib: x @ W
            self.fc.weight.copy_(torch.from_numpy(weights.T.copy()))
            if has_bias:
                self.fc.bias.copy_(torch.from_numpy(layers[-1].params[inputs * outputs :]))

    @property
    def dim(self) -> int:
        return self.fc.out_features

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 256.0
        x = self.stem_pool(F.relu(self.stem_affine(self.stem_conv(x))))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptors: torch.Tensor = self.fc(self.trunk(x).mean(dim=(2, 3)))
        return descriptors


def dlib_model_path() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """The torch network with the weights of `path` (default: the installed dlib model)."""
    return DlibResNet(read_dlib_network(path or dlib_model_path())).eval()


def chips_to_tensor(chips: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """(n, 150, 150, 3) uint8 RGB chips as the (n, 3, 150, 150) float tensor the network takes, on `device`."""
    pixels = torch.from_numpy(np.ascontiguousarray(chips, dtype=np.float32)).to(
        device
    )  # copied once, then reordered there
    return pixels.permute(0, 3, 1, 2).contiguous()
