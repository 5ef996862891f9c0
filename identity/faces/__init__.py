"""The face engine: image loading, detection, alignment, quality and embeddings.

Importing this package loads no model library (dlib, onnxruntime, torch): each is
imported by the model that needs it, on first use. The services use:

    image = load_image(path)                  # or decode_image(data, name)
    pipeline = build_pipeline(settings)       # .model_id, .dim
    [faces] = pipeline.process([image])       # ImageFaces -> DetectedFace...
    for path, outcome in process_paths_parallel(settings, paths, workers): ...

Landmark order and the meaning of each field: identity.faces.types.
"""

from identity.faces.executor import (
    Analysed,
    ExecutorBusy,
    ExecutorClosed,
    InferenceExecutor,
    ProcessExecutor,
    ThreadExecutor,
    process_paths_parallel,
)
from identity.faces.images import decode_image, load_image
from identity.faces.local_packs import LocalPack, list_local_packs, load_local_pack
from identity.faces.packs import (
    DEFAULT_MODEL,
    DefaultThreshold,
    ModelPack,
    PackInfo,
    build_pack,
    default_model,
    list_packs,
    resolve,
    save_local_pack,
)
from identity.faces.pipeline import FacePipeline, build_pipeline
from identity.faces.quality import BLURRY, LOW_SCORE, PROFILE, TILTED, TOO_SMALL
from identity.faces.torch_models import export_onnx
from identity.faces.types import (
    DetectedFace,
    ImageFaces,
    LoadedImage,
    Quality,
    scan_limit_warning,
)

__all__ = [
    "Analysed",
    "BLURRY",
    "DEFAULT_MODEL",
    "LOW_SCORE",
    "PROFILE",
    "TILTED",
    "TOO_SMALL",
    "DefaultThreshold",
    "DetectedFace",
    "ExecutorBusy",
    "ExecutorClosed",
    "FacePipeline",
    "ImageFaces",
    "InferenceExecutor",
    "LoadedImage",
    "LocalPack",
    "ModelPack",
    "PackInfo",
    "ProcessExecutor",
    "Quality",
    "ThreadExecutor",
    "build_pack",
    "build_pipeline",
    "decode_image",
    "default_model",
    "export_onnx",
    "list_local_packs",
    "list_packs",
    "load_local_pack",
    "load_image",
    "process_paths_parallel",
    "resolve",
    "save_local_pack",
    "scan_limit_warning",
]
