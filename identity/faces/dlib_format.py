"""Read the layers and weights of a dlib DNN file (dlib's own binary serialization).

Only what dlib's face recognition ResNet uses is understood: the rgb input layer,
con_, affine_, relu_, max_pool_/avg_pool_, add_prev_, fc_ and the metric loss. The
file stores each layer's details bottom-up (input first), so the result is the
layer list in the order data flows. Tag and skip layers carry no data and do not
appear; the topology they encode is rebuilt by dlib_torch from the layer pattern.

Encoding (dlib/serialize.h): an integer is a control byte (low nibble: byte count,
0x80: negative) then that many little-endian bytes; a float is an integer mantissa
and an integer exponent; a string is its length then its bytes; a bool is the
character '0' or '1'; a tensor is (version 2, n, k, nr, nc) then n*k*nr*nc
little-endian float32s.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from identity.errors import ModelError


@dataclass
class DlibLayer:
    kind: str  # "input", "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    ints: tuple[int, ...] = ()  # shape and stride fields, as the layer stores them
    floats: tuple[float, ...] = ()
    params: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def fail(self, why: str) -> ModelError:
        return ModelError(f"{self.path} is not a dlib face recognition network: {why} at byte {self.pos}")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("unexpected end of file")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise self.fail("bad integer")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        return self.take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail("bad bool")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise self.fail("unknown tensor version")
        shape = [self.int() for _ in range(4)]
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)

    def alias(self) -> tuple[builtins.int, ...]:  # builtins: this class's own int() shadows the type here
        if self.int() != 1:
            raise self.fail("unknown alias tensor version")
        return tuple(self.int() for _ in range(4))


def read_dlib_network(path: str | Path) -> list[DlibLayer]:
    """The network's layers, input first, with their weights as float32 arrays."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = _Reader(data, path)
    if reader.int() != 1 or reader.string() != "loss_metric_2":
        raise reader.fail("no metric loss layer")
    reader.float(), reader.float()  # the loss's margin and distance threshold: training-only
    # Each wrapper writes its version, then its subnetwork, then its own details:
    # 2 wraps a layer, 1 is a tag or skip layer that holds nothing, and 3 wraps the
    # layer on top of the input, adding a sample expansion factor at its end.
    wrappers: list[int] = []
    while reader.data[reader.pos : reader.pos + 2] in (b"\x01\x01", b"\x01\x02", b"\x01\x03"):
        wrappers.append(reader.int())
    layers = [_read_input(reader)]
    for version in reversed(wrappers):
        if version == 1:
            continue
        layers.append(_read_details(reader))
        for _ in range(3):
            reader.bool()
        for _ in range(3):
            reader.tensor()  # gradients and cached outputs: empty in a saved model
        if version == 3:
            reader.int()
    if reader.pos != len(data):
        raise reader.fail("trailing bytes")
    return layers


def _read_input(reader: _Reader) -> DlibLayer:
    if reader.string() != "input_rgb_image_sized":
        raise reader.fail("expected an rgb image input")
    means = (reader.float(), reader.float(), reader.float())
    return DlibLayer("input", ints=(reader.int(), reader.int()), floats=means)


def _read_details(reader: _Reader) -> DlibLayer:
    name = reader.string()
    if name == "con_4":
        params = reader.tensor()
        ints = tuple(reader.int() for _ in range(7))  # filters, nr, nc, stride y/x, padding y/x
        reader.alias(), reader.alias()
        for _ in range(4):
            reader.float()  # learning-rate and weight-decay multipliers
        return DlibLayer("con", ints=ints, params=params)
    if name == "affine_":
        params = reader.tensor()
        reader.alias(), reader.alias()
        reader.int()  # mode: per channel (conv) or per element (fc)
        return DlibLayer("affine", params=params)
    if name in ("max_pool_2", "avg_pool_2"):
        ints = tuple(reader.int() for _ in range(6))  # window nr/nc (0: everything), stride y/x, padding y/x
        return DlibLayer(name[:-2], ints=ints)
    if name in ("relu_", "add_prev_"):
        return DlibLayer(name.rstrip("_"))
    if name == "fc_2":
        outputs, inputs = reader.int(), reader.int()
        params = reader.tensor()
        reader.alias(), reader.alias()
        has_bias = reader.int() == 0  # dlib's FC_HAS_BIAS is 0
        for _ in range(4):
            reader.float()
        return DlibLayer("fc", ints=(outputs, inputs, int(has_bias)), params=params)
    raise reader.fail(f"unsupported layer {name!r}")
