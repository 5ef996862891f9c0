"""Detector model files that no package ships, installed into `<data dir>/detectors/`.

`identity models install NAME [--from FILE]` puts a file here only once its sha256 is
the pinned one, so a file found here is the file the pack was measured with. Packs
that need one look it up with `installed_path`; nothing here downloads or loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DETECTORS_DIR = "detectors"


@dataclass(frozen=True)
class InstallableDetector:
    name: str  # what `identity models install` takes
    filename: str  # its name under <data dir>/detectors/
    sha256: str  # the only content accepted
    size: int  # bytes
    url: str  # the one official place it is downloaded from
    license: str
    description: str
    packs: tuple[str, ...]  # the model packs that detect with it: a store using one keeps it installed


YUNET = InstallableDetector(
    name="yunet",
    filename="yunet_n_dynamic.onnx",
    sha256="104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12",
    size=322_906,
    url="https://raw.githubusercontent.com/ShiqiYu/libfacedetection.train/master/onnx/yunet_n_dynamic.onnx",
    license="Apache-2.0 (ShiqiYu/libfacedetection.train)",
    description="YuNet: a small CNN face detector with 5 landmarks (OpenCV's cv2.FaceDetectorYN)",
    packs=("yunet-dlib-resnet",),
)

INSTALLABLE: dict[str, InstallableDetector] = {YUNET.name: YUNET}


def detectors_dir(data_dir: Path) -> Path:
    return Path(data_dir) / DETECTORS_DIR


def installed_path(data_dir: Path | None, name: str) -> Path | None:
    """The installed file of detector `name`, or None when it is not installed (or no data dir is known)."""
    if data_dir is None:
        return None
    path = detectors_dir(data_dir) / INSTALLABLE[name].filename
    return path if path.is_file() else None
