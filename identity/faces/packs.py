"""Model packs: detector + aligner + recognizer under one id, and the registry that builds them.

A model reference names a pack, optionally pinned to a version ("dlib-resnet@1");
without a version the latest is used (for a local, fine-tuned pack: its latest
promoted version). A version is an embedding recipe: vectors of two versions never
share a collection, so a recipe change always bumps it. A reference may carry the
weights digest of a model id ("dlib-resnet-ft@3+1a2b3c4d"); the pack is then refused
unless its weights still have that digest.

Built-in packs are listed here; local packs live under `<data dir>/models/`
(identity.faces.local_packs) and may not take a built-in name.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from identity.config import FaceSettings, Settings
from identity.errors import ModelError
from identity.faces.align import ArcFaceAligner
from identity.faces.base import Aligner, Detector, Recognizer
from identity.faces.device import Device
from identity.faces.dlib_models import (
    DEFAULT_MIN_FACE_PX as DLIB_MIN_FACE_PX,
)
from identity.faces.dlib_models import (
    HOG,
    DlibChipAligner,
    DlibDetector,
    DlibResnetRecognizer,
    default_stages,
)
from identity.faces.installed import YUNET, installed_path
from identity.faces.local_packs import (
    LocalPack,
    list_local_packs,
    load_local_pack,
    write_local_pack,
)
from identity.faces.onnx_models import (
    OnnxArcFaceRecognizer,
    OnnxPixelRecognizer,
    ScrfdDetector,
)
from identity.faces.torch_models import TorchIResNetRecognizer
from identity.faces.yunet import DEFAULT_MIN_FACE_PX as YUNET_MIN_FACE_PX
from identity.faces.yunet import YunetDetector

logger = logging.getLogger(__name__)

DETECTOR_FALLBACK = True  # dlib detector: retry harder when the configured stage finds nothing
DEFAULT_MODEL = "dlib-resnet"  # the bundled pack: what default_model answers when YuNet is not chosen
YUNET_MODEL = "yunet-dlib-resnet"


@dataclass(frozen=True)
class DefaultThreshold:
    """A cosine-similarity cut to use until one is calibrated on the deployment's own data."""

    value: float
    far: float | None  # false-accept rate per comparison it was measured at; None: not measured
    source: str


@dataclass(frozen=True)
class DefaultDecision:
    """A threshold on the normalized decision score (identity.evaluation.decision), measured by FPIR."""

    value: float
    fpir: float  # share of searches for people not enrolled that it calls a match
    gallery_persons: int  # the gallery size it was measured at: it holds near that size
    source: str


@dataclass
class ModelPack:
    name: str
    version: int
    detector: Detector
    aligner: Aligner
    recognizer: Recognizer
    mirror: bool  # average each embedding with its mirrored crop's
    default_threshold: DefaultThreshold
    weights: Path | None = None  # user-supplied recognizer weights; their digest joins the id
    default_decision: DefaultDecision | None = None  # None: the raw rule until calibrated by FPIR

    @functools.cached_property
    def model_id(self) -> str:
        """`name@version`, plus `+<sha256[:8]>` of the weights when the user supplies them."""
        base = f"{self.name}@{self.version}"
        return f"{base}+{file_digest(self.weights)[:8]}" if self.weights else base


@dataclass(frozen=True)
class PackInfo:
    """One row of `identity models list`."""

    model_id: str
    dim: int | None  # None: read from the weights when they load
    detector: str
    recognizer: str
    recipe: str  # how a face becomes a vector
    settings: str  # the FaceSettings fields it reads
    active: bool = False  # the pack the given settings select
    promoted: bool | None = None  # local packs: cleared for use by its training run; None: built-in
    source: str = "built-in"  # or the folder of a local pack


Parts = tuple[Detector, Aligner, Recognizer, Path | None]


@dataclass(frozen=True)
class PackSpec:
    name: str
    version: int
    mirror: bool
    threshold: DefaultThreshold
    info: PackInfo
    parts: Callable[[Settings, int | None], Parts]
    decision: DefaultDecision | None = None


def _dlib_detector(faces: FaceSettings) -> DlibDetector:
    kind = HOG if faces.detector in ("auto", "yunet") else faces.detector  # those name packs; dlib's own default is HOG
    return DlibDetector(default_stages(kind, faces.upsample, DETECTOR_FALLBACK), faces.min_face_px or DLIB_MIN_FACE_PX)


def _dlib_parts(settings: Settings, threads: int | None) -> Parts:
    recognizer = DlibResnetRecognizer(threads, Device.parse(settings.faces.device))
    return _dlib_detector(settings.faces), DlibChipAligner(), recognizer, None


def _yunet_parts(settings: Settings, threads: int | None) -> Parts:
    path = installed_path(settings.data_dir, YUNET.name)
    if path is None:
        raise ModelError(f"the {YUNET_MODEL} pack needs the YuNet detector: run `identity models install {YUNET.name}`")
    faces = settings.faces
    detector = YunetDetector(path, faces.yunet_min_score, faces.min_face_px or YUNET_MIN_FACE_PX)
    return detector, DlibChipAligner(), DlibResnetRecognizer(threads, Device.parse(faces.device)), None


def _arcface_detector(faces: FaceSettings, threads: int | None, onnx_path: str | Path | None) -> Detector:
    if onnx_path:
        return ScrfdDetector(onnx_path, threads, device=Device.parse(faces.device))
    logger.info("no faces.onnx_detector set: detecting with dlib (%s, upsample %d)", faces.detector, faces.upsample)
    return _dlib_detector(faces)


def _insightface_parts(settings: Settings, threads: int | None) -> Parts:
    faces = settings.faces
    detector_path: str | Path | None = faces.onnx_detector
    recognizer_path: str | Path | None = faces.onnx_recognizer
    if not recognizer_path:
        if not faces.allow_download:
            raise ModelError(
                "the insightface-onnx pack needs faces.onnx_recognizer (and faces.onnx_detector) "
                "set to local .onnx files, or faces.allow_download to fetch buffalo_l"
            )
        detector_path, recognizer_path = _download_buffalo_l()
    recognizer = OnnxArcFaceRecognizer(recognizer_path, threads, Device.parse(faces.device))
    return _arcface_detector(faces, threads, detector_path), ArcFaceAligner(), recognizer, Path(recognizer_path)


def _torch_parts(settings: Settings, threads: int | None) -> Parts:
    faces = settings.faces
    if not faces.torch_checkpoint:
        raise ModelError("the torch-iresnet pack needs faces.torch_checkpoint set to a .pth state dict")
    recognizer = TorchIResNetRecognizer(faces.torch_checkpoint, faces.torch_arch, threads, Device.parse(faces.device))
    return (
        _arcface_detector(faces, threads, faces.onnx_detector),
        ArcFaceAligner(),
        recognizer,
        Path(faces.torch_checkpoint),
    )


# Measured with benchmarks/verification.py's embeddings of 5,162 lfw-dev images: the score
# exceeded by 1 in 1,000 of their 13.3 million different-person pairs.
_LFW_FAR = 1e-3
_LFW_SOURCE = "lfw-dev, 13.3M different-person pairs"
# Measured with `identity eval` on lfw-dev: the normalized decision score exceeded by 1 in
# 100 of its 3,426 non-mated searches (one photo per person in a 2,848-person gallery).
_LFW_DECISION = DefaultDecision(1.010, 1e-2, 2848, "FPIR 0.01 on lfw-dev, 2,848 persons, 3,426 non-mated searches")
# Unknown user weights cannot be measured here; this is a typical ArcFace/CosFace cut.
_ARCFACE_GUESS = DefaultThreshold(0.35, None, "typical of ArcFace/CosFace models, not measured for these weights")
# Fine-tuning trains with the large margin cosine loss, which spreads identities like ArcFace/CosFace.
_FINE_TUNED_GUESS = DefaultThreshold(0.35, None, "typical of CosFace fine-tuning, not measured for this pack")

_DLIB_DETECTOR = "dlib HOG (or MMOD CNN), 68-point landmarks, retries harder when nothing or only small faces are found"
_ARCFACE_DETECTOR = "faces.onnx_detector (SCRFD/RetinaFace), else dlib"
_YUNET_DETECTOR = "YuNet (installed), tiled at the scale faces.min_face_px allows, dlib 68-point landmarks"
# Measured with `identity eval` on lfw-dev with this pack: FAR 1e-3 at 0.9281 (19.6M
# different-person pairs) and FPIR 1e-2 at 1.0106 (3,426 non-mated searches, 2,848 persons),
# the same cuts as dlib-resnet@2's (same recognizer and chip; embeddings at cosine 0.99983 median).
_YUNET_SOURCE = "lfw-dev with this pack, 19.6M different-person pairs (0.9281)"
_YUNET_DECISION = DefaultDecision(
    1.010, 1e-2, 2848, "FPIR 0.01 on lfw-dev with this pack (1.0106), 2,848 persons, 3,426 non-mated searches"
)
_SPECS = (
    PackSpec(
        "dlib-resnet",
        1,
        False,
        DefaultThreshold(0.926, _LFW_FAR, _LFW_SOURCE),
        PackInfo(
            "dlib-resnet@1", 128, _DLIB_DETECTOR, "dlib ResNet descriptor", "dlib chip, one pass", "detector, upsample"
        ),
        _dlib_parts,
    ),
    PackSpec(
        "dlib-resnet",
        2,
        True,
        DefaultThreshold(0.928, _LFW_FAR, _LFW_SOURCE),
        PackInfo(
            "dlib-resnet@2",
            128,
            _DLIB_DETECTOR,
            "dlib ResNet descriptor",
            "dlib chip, mean of the chip and its mirror image (offline default)",
            "detector, upsample",
        ),
        _dlib_parts,
        _LFW_DECISION,
    ),
    PackSpec(
        YUNET_MODEL,
        1,
        True,
        DefaultThreshold(0.928, _LFW_FAR, _YUNET_SOURCE),
        PackInfo(
            f"{YUNET_MODEL}@1",
            128,
            _YUNET_DETECTOR,
            "dlib ResNet descriptor",
            "dlib chip, mean of the chip and its mirror image",
            "yunet_min_score, min_face_px",
        ),
        _yunet_parts,
        _YUNET_DECISION,
    ),
    PackSpec(
        "insightface-onnx",
        1,
        False,
        _ARCFACE_GUESS,
        PackInfo(
            "insightface-onnx@1",
            None,
            _ARCFACE_DETECTOR,
            "ArcFace/CosFace ONNX",
            "112x112 ArcFace-template crop",
            "onnx_detector, onnx_recognizer, allow_download",
        ),
        _insightface_parts,
    ),
    PackSpec(
        "torch-iresnet",
        1,
        False,
        _ARCFACE_GUESS,
        PackInfo(
            "torch-iresnet@1",
            512,
            _ARCFACE_DETECTOR,
            "arcface_torch iresnet (.pth)",
            "112x112 ArcFace-template crop",
            "torch_checkpoint, torch_arch, onnx_detector",
        ),
        _torch_parts,
    ),
)


def default_model(settings: Settings) -> tuple[str, str]:
    """The pack a new store (or `identity eval`) uses when no model is pinned, and why.

    Resolved when a store is created or re-indexed; an existing store keeps its pack.
    faces.detector: auto -> the YuNet pack when YuNet is installed, else dlib-resnet;
    yunet -> the YuNet pack (refused, with the install hint, when it is not installed);
    hog / cnn -> dlib-resnet.
    """
    chosen = settings.faces.detector
    installed = installed_path(settings.data_dir, YUNET.name) is not None
    if chosen == "yunet":
        if not installed:
            raise ModelError(
                f"faces.detector is yunet but YuNet is not installed: run `identity models install {YUNET.name}`"
            )
        return YUNET_MODEL, "faces.detector is yunet"
    if chosen == "auto":
        if installed:
            return YUNET_MODEL, "YuNet is installed and faces.detector is auto"
        return DEFAULT_MODEL, "YuNet is not installed and faces.detector is auto: the bundled dlib models"
    return DEFAULT_MODEL, f"faces.detector is {chosen}: the bundled dlib models"


def builtin_names() -> set[str]:
    return {s.name for s in _SPECS}


def save_local_pack(
    data_dir: Path, name: str, onnx_file: str | Path, checkpoint_file: str | Path, manifest: dict[str, Any]
) -> str:
    """Copy a trained recognizer into the next free version of `name` (not a built-in pack's);
    returns "name@version"."""
    if name in builtin_names():
        raise ModelError(f"{name!r} is a built-in model pack; give the fine-tuned pack its own name (e.g. {name}-ft)")
    return write_local_pack(data_dir, name, onnx_file, checkpoint_file, manifest)


def resolve(model: str, data_dir: Path | None = None) -> PackSpec:
    """The spec a model reference names: "name" (latest version), "name@version", either with "+digest".

    Local packs are looked up under `data_dir`'s `models/`; None: built-ins only.
    """
    ref, _, _ = model.strip().partition("+")
    name, _, version = ref.partition("@")
    versions = sorted((s for s in _SPECS if s.name == name), key=lambda s: s.version)
    if not versions:
        local = list_local_packs(data_dir) if data_dir else []
        if data_dir and any(p.name == name for p in local):
            return _local_spec(load_local_pack(data_dir, ref))
        known = ", ".join(sorted(builtin_names() | {p.name for p in local}))
        raise ModelError(f"unknown model pack {name!r}; known packs: {known}")
    if not version:
        return versions[-1]
    match = next((s for s in versions if str(s.version) == version), None)
    if match is None:
        raise ModelError(
            f"model pack {name!r} has no version {version!r}; known: {', '.join(s.info.model_id for s in versions)}"
        )
    return match


def build_pack(model: str | None, settings: Settings, threads: int | None = None) -> ModelPack:
    """Build (not load) the pack a reference names (None: the default); weights load on first use."""
    ref = model or DEFAULT_MODEL
    spec = resolve(ref, settings.data_dir)
    detector, aligner, recognizer, weights = spec.parts(settings, threads)
    pack = ModelPack(
        spec.name, spec.version, detector, aligner, recognizer, spec.mirror, spec.threshold, weights, spec.decision
    )
    digest = ref.partition("+")[2].strip()
    if digest and pack.model_id != f"{spec.name}@{spec.version}+{digest}":
        found = (
            f"weights {weights} have digest {pack.model_id.partition('+')[2]}" if weights else "it has no weights file"
        )
        raise ModelError(f"model {ref} needs weights with digest {digest}, but {found}")
    return pack


def list_packs(settings: Settings | None = None, active: str | None = None) -> list[PackInfo]:
    """Every pack version (local ones from the settings' data dir), for `identity models list`.

    `active` marks the pack that reference (default: the settings' model) selects.
    """
    data_dir = settings.data_dir if settings else None
    chosen = active or ((settings.model or DEFAULT_MODEL) if settings else None)
    active_id = resolve(chosen, data_dir).info.model_id if chosen else None
    specs = list(_SPECS) + [_local_spec(p) for p in (list_local_packs(settings.data_dir) if settings else [])]
    return [dataclasses.replace(spec.info, active=spec.info.model_id == active_id) for spec in specs]


def _local_spec(pack: LocalPack) -> PackSpec:
    manifest = pack.manifest
    size, aligner_name = manifest["input_size"], manifest["aligner"]
    measured = manifest.get("threshold")
    threshold = (
        DefaultThreshold(float(measured["value"]), measured.get("far"), str(measured.get("source") or pack.ref))
        if measured
        else _FINE_TUNED_GUESS
    )
    recipe = f"{aligner_name} {size}x{size} crop{', mean with its mirror image' if manifest['mirror'] else ''}"
    info = PackInfo(
        pack.ref,
        manifest["dim"],
        _DLIB_DETECTOR,
        f"fine-tuned ONNX (from {manifest.get('base') or 'unknown base'})",
        recipe,
        "detector, upsample",
        promoted=pack.promoted,
        source=str(pack.path),
    )

    def parts(settings: Settings, threads: int | None) -> Parts:
        detector = _dlib_detector(settings.faces)
        aligner: Aligner = DlibChipAligner(size) if aligner_name == "dlib-chip" else ArcFaceAligner()
        recognizer = OnnxPixelRecognizer(
            pack.recognizer_path, size, manifest["dim"], threads, Device.parse(settings.faces.device)
        )
        return detector, aligner, recognizer, pack.recognizer_path

    return PackSpec(pack.name, pack.version, manifest["mirror"], threshold, info, parts)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model weights {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _download_buffalo_l() -> tuple[Path, Path]:
    """insightface's buffalo_l detector and recognizer, fetched once into ~/.insightface (opt-in)."""
    from insightface.utils.storage import ensure_available

    logger.warning("faces.allow_download is set: fetching insightface's buffalo_l model pack")
    try:
        root = Path(ensure_available("models", "buffalo_l"))
    except Exception as exc:  # network, disk and zip errors alike
        raise ModelError(f"cannot download buffalo_l: {' '.join(str(exc).split())[:200]}") from None
    found = {p.name: p for p in root.rglob("*.onnx")}
    if "det_10g.onnx" not in found or "w600k_r50.onnx" not in found:
        raise ModelError(f"{root} lacks det_10g.onnx or w600k_r50.onnx")
    return found["det_10g.onnx"], found["w600k_r50.onnx"]
