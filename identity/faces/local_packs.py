"""Local model packs: fine-tuned recognizers saved under `<data dir>/models/<name>@<version>/`.

A pack folder holds `pack.json` (the manifest), `recognizer.onnx` ((n, 3, h, w) RGB
pixel values 0..255 in, (n, dim) out; any normalisation is inside the graph) and the
training `checkpoint.pt`. Folders are written under a temporary name and renamed into
place, so a reader never sees half a pack, and a version is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from identity.errors import ModelError
from identity.fsutil import fsync_dir

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
MANIFEST = "pack.json"
RECOGNIZER = "recognizer.onnx"
CHECKPOINT = "checkpoint.pt"
ALIGNERS = ("dlib-chip", "arcface-112")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")  # no "@" or "+": they delimit versions and digests
_REQUIRED = {"aligner": str, "input_size": int, "dim": int, "mirror": bool}


@dataclass(frozen=True)
class LocalPack:
    name: str
    version: int
    path: Path  # the pack's folder
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def recognizer_path(self) -> Path:
        name: str = self.manifest.get("recognizer", RECOGNIZER)
        return self.path / name

    @property
    def promoted(self) -> bool:
        return bool(self.manifest.get("promoted", False))


def models_dir(data_dir: Path) -> Path:
    return Path(data_dir) / MODELS_DIR


def write_local_pack(
    data_dir: Path, name: str, onnx_file: str | Path, checkpoint_file: str | Path, manifest: dict[str, Any]
) -> str:
    """Copy a trained recognizer into the next free version of `name`; returns "name@version".

    identity.faces.packs.save_local_pack, which knows the built-in names, is the way in.
    """
    if not _NAME.match(name):
        raise ModelError(f"{name!r} is not a model pack name: use lower-case letters, digits, '.', '_' and '-'")
    for source in (onnx_file, checkpoint_file):
        if not Path(source).is_file():
            raise ModelError(f"cannot save model pack {name}: {source} is not a file")
    root = models_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _copy(Path(onnx_file), staging / RECOGNIZER)
        _copy(Path(checkpoint_file), staging / CHECKPOINT)
        content = {
            **manifest,
            "name": name,
            "recognizer": RECOGNIZER,
            "checkpoint": CHECKPOINT,
            "promoted": bool(manifest.get("promoted", False)),
            "created_at": manifest.get("created_at") or datetime.now(UTC).isoformat(),
        }
        version = _next_version(root, name)
        while True:
            content["version"] = version
            _check_manifest(content, f"model pack {name}@{version}")
            _write_json(staging / MANIFEST, content)
            try:
                os.rename(staging, root / f"{name}@{version}")  # fails if another writer took this version
                break
            except OSError:
                if not (root / f"{name}@{version}").exists():
                    raise
                version += 1
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved model pack %s@%d under %s", name, version, root)
    return f"{name}@{version}"


def list_local_packs(data_dir: Path) -> list[LocalPack]:
    """Every readable local pack, by name then version; an unreadable one is logged and left out."""
    found = []
    root = models_dir(data_dir)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        name, _, version = folder.name.partition("@")
        if folder.name.startswith(".") or not version.isdigit():
            continue
        try:
            found.append(_read(folder, name, int(version)))
        except ModelError as exc:
            logger.warning("%s", exc)
    return sorted(found, key=lambda p: (p.name, p.version))


def load_local_pack(data_dir: Path, ref: str) -> LocalPack:
    """The pack "name@version", or for a bare "name" its latest promoted version."""
    name, _, version = ref.strip().partition("@")
    if version:
        if not version.isdigit():
            raise ModelError(f"model pack {ref!r}: the version must be a number")
        folder = models_dir(data_dir) / f"{name}@{int(version)}"
        if not folder.is_dir():
            known = [p.ref for p in list_local_packs(data_dir) if p.name == name]
            raise ModelError(
                f"no model pack {name}@{int(version)} in {models_dir(data_dir)}"
                + (f"; known: {', '.join(known)}" if known else "")
            )
        return _read(folder, name, int(version))
    versions = [p for p in list_local_packs(data_dir) if p.name == name]
    promoted = [p for p in versions if p.promoted]
    if promoted:
        return promoted[-1]
    if versions:
        raise ModelError(
            f"model pack {name!r} has no promoted version ({', '.join(p.ref for p in versions)}); "
            f"name one explicitly, e.g. {versions[-1].ref}"
        )
    raise ModelError(f"no model pack named {name!r} in {models_dir(data_dir)}")


def _read(folder: Path, name: str, version: int) -> LocalPack:
    label = f"model pack {name}@{version} ({folder})"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelError(f"{label}: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{label}: {MANIFEST} is unreadable or not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{label}: {MANIFEST} is not a JSON object")
    _check_manifest(manifest, label)
    if manifest.get("name") != name or manifest.get("version") != version:
        raise ModelError(f"{label}: {MANIFEST} names {manifest.get('name')}@{manifest.get('version')}")
    return LocalPack(name, version, folder, manifest)


def _check_manifest(manifest: dict[str, Any], label: str) -> None:
    for key, kind in _REQUIRED.items():
        # bool is an int in Python: keep true/false out of the number fields.
        if not isinstance(manifest.get(key), kind) or (kind is int and isinstance(manifest.get(key), bool)):
            raise ModelError(f"{label}: '{key}' must be a {kind.__name__}, got {manifest.get(key)!r}")
    if manifest["aligner"] not in ALIGNERS:
        raise ModelError(f"{label}: unknown aligner {manifest['aligner']!r}; known: {', '.join(ALIGNERS)}")
    if manifest["aligner"] == "arcface-112" and manifest["input_size"] != 112:
        raise ModelError(f"{label}: the arcface-112 aligner makes 112x112 crops, not {manifest['input_size']}")
    threshold = manifest.get("threshold")
    if threshold is not None and not (isinstance(threshold, dict) and isinstance(threshold.get("value"), (int, float))):
        raise ModelError(f'{label}: \'threshold\' must be null or {{"value": number, "far": ..., "source": ...}}')


def _next_version(root: Path, name: str) -> int:
    taken = [
        int(v) for folder in root.iterdir() for n, _, v in [folder.name.partition("@")] if n == name and v.isdigit()
    ]
    return max(taken, default=0) + 1


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fsync(writer.fileno())


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with open(path, "w") as stream:
        json.dump(content, stream, indent=2, sort_keys=True)
        stream.flush()
        os.fsync(stream.fileno())
