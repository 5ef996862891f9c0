"""`identity models install/list/remove`: detector files that no package ships, in `<data dir>/detectors/`.

A file is installed only once its size and sha256 are the pinned ones and OpenCV can load
it; it is written to a temporary file in the same folder, flushed and renamed into place,
so a crash or a refusal never leaves a partial file under the detector's name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from identity.app.core import App
from identity.errors import ModelError
from identity.faces.installed import (
    INSTALLABLE,
    InstallableDetector,
    detectors_dir,
    installed_path,
)
from identity.faces.packs import file_digest
from identity.faces.yunet import yunet_load_error
from identity.fsutil import fsync_dir
from identity.store.sql.faces import indexed_faces_by_model
from identity.store.sql.model_rows import (
    active_model,
    list_models,
    records_active_model,
)

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation: a stalled mirror fails instead of hanging
_CHUNK = 1 << 16

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class InstalledDetector:
    """What `identity models install` reports."""

    name: str
    path: str
    sha256: str
    size: int
    source: str  # the URL or file it came from
    already_installed: bool  # the right file was there: nothing was written


@dataclass(frozen=True)
class DetectorStatus:
    """One detector row of `identity models list`."""

    name: str
    installed: bool
    path: str  # where it is, or would be, installed
    sha256: str  # the pinned digest (an installed file has it: nothing else is installed)
    packs: list[str]  # the model packs that detect with it
    description: str


def detector(name: str) -> InstallableDetector:
    try:
        return INSTALLABLE[name]
    except KeyError:
        raise ModelError(f"unknown detector {name!r}; installable: {', '.join(sorted(INSTALLABLE))}") from None


def install_detector(
    data_dir: Path, name: str, source_file: Path | None = None, url: str | None = None, progress: Progress | None = None
) -> InstalledDetector:
    """Install detector `name` from `source_file`, else by downloading `url` (default: its official URL).

    Idempotent: a file already installed is left alone. Raises ModelError, naming the expected and the
    actual sha256, for a file that is not the pinned one; nothing is installed then.
    """
    spec = detector(name)
    source = str(source_file) if source_file is not None else (url or spec.url)
    present = installed_path(data_dir, name)
    if present is not None and file_digest(present) == spec.sha256:
        return InstalledDetector(name, str(present), spec.sha256, spec.size, source, already_installed=True)
    folder = detectors_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".part-", suffix=f"-{spec.filename}", delete=False) as part:
        partial = Path(part.name)
        try:
            digest = (
                _copy_from_file(source_file, part)
                if source_file is not None
                else _download(source, spec, part, progress)
            )
            part.flush()
            os.fsync(part.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    try:
        _verify(spec, source, partial, digest)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    fsync_dir(folder)
    return InstalledDetector(name, str(target), spec.sha256, spec.size, source, already_installed=False)


def detector_statuses(data_dir: Path | None) -> list[DetectorStatus]:
    """Every installable detector, installed or not."""
    rows = []
    for spec in INSTALLABLE.values():
        path = installed_path(data_dir, spec.name)
        where = path or (detectors_dir(data_dir) / spec.filename if data_dir else Path(spec.filename))
        rows.append(
            DetectorStatus(spec.name, path is not None, str(where), spec.sha256, list(spec.packs), spec.description)
        )
    return rows


def remove_detector(app: App, name: str) -> str:
    """Delete an installed detector file that no model of the store uses; returns the path removed.

    Used: the store's active model, or any model with indexed faces, is one of the detector's packs.
    """
    spec = detector(name)
    path = installed_path(app.settings.data_dir, name)
    if path is None:
        raise ModelError(f"detector {name} is not installed (nothing under {detectors_dir(app.settings.data_dir)})")
    user = _model_using(app, spec)
    if user is not None:
        raise ModelError(
            f"detector {name} is used by model {user} of this store; switch the store to another "
            f"model first (identity reindex --model dlib-resnet)",
            model=user,
        )
    path.unlink()
    fsync_dir(path.parent)
    return str(path)


def _model_using(app: App, spec: InstallableDetector) -> str | None:
    if not app.store_exists() or not records_active_model(app.engine):  # no store, or none with models yet
        return None
    with app.sessions() as session:
        active = active_model(session)
        with_faces = indexed_faces_by_model(session)
        models = [m for m in list_models(session) if (active is not None and m.id == active.id) or with_faces.get(m.id)]
    return next((m.model_id for m in models if m.name in spec.packs), None)


def _copy_from_file(source_file: Path, out: IO[bytes]) -> str:
    digest = hashlib.sha256()
    try:
        with open(source_file, "rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise ModelError(f"{source_file}: cannot read it ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _download(url: str, spec: InstallableDetector, out: IO[bytes], progress: Progress | None) -> str:
    digest, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            # A wrong URL may serve a huge file: stop reading well past the pinned size.
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
                if done > 2 * spec.size:
                    break
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        OSError,
        ValueError,
    ) as exc:  # HTTPException: a cut-off body
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(
            f"cannot download {spec.name} from {url} ({reason}): fetch {spec.url} where there is a "
            f"network, then run `identity models install {spec.name} --from FILE`",
            url=url,
        ) from None
    return digest.hexdigest()


def _verify(spec: InstallableDetector, source: str, path: Path, digest: str) -> None:
    size = path.stat().st_size
    if digest != spec.sha256 or size != spec.size:
        raise ModelError(
            f"{source} is not the {spec.name} model file: its sha256 is {digest} ({size} bytes), expected "
            f"{spec.sha256} ({spec.size} bytes); nothing installed",
            expected_sha256=spec.sha256,
            actual_sha256=digest,
            size=size,
        )
    problem = yunet_load_error(path)
    if problem:
        raise ModelError(f"{source}: {problem}; nothing installed")
