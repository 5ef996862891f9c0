"""Where photos uploaded for enrollment are kept: `uploads/` under the data directory.

They are the enrolled photos (re-indexing and audit thumbnails read them again), so a copy
stays while an image row holding a face names it, until erasure deletes it with its person
(services.curation). A copy that becomes no such row (a conflict, a duplicate, no face, not an
image, a failed or cancelled job) is owned by nobody, so erasure would never find it: it is
removed as soon as its job is finished (discard_unheld), and `doctor` removes any left over
(services.upload_orphans).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from identity.app.core import App
from identity.config import Settings
from identity.store.sql.images import paths_held
from identity.store.sql.jobs import paths_waiting


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def new_upload_folder(settings: Settings) -> Path:
    """A fresh folder for one request's photos."""
    folder = uploads_dir(settings) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


@contextlib.contextmanager
def upload_folder(settings: Settings) -> Iterator[Path]:
    """new_upload_folder, removed with what it holds if the request fails before its jobs are queued."""
    folder = new_upload_folder(settings)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def under_uploads(settings: Settings, paths: Iterable[str]) -> list[str]:
    """Those of `paths` inside uploads/ (the only files the product may delete; the others are the organization's)."""
    root = uploads_dir(settings).resolve()
    return [p for p in paths if p and Path(p).resolve().is_relative_to(root)]


def unheld(app: App, paths: Iterable[str]) -> list[str]:
    """Those of `paths` in uploads/ that no image row holding a face names and no open job will read."""
    mine = under_uploads(app.settings, paths)
    if not mine:
        return []
    with app.sessions() as session:
        kept = paths_held(session, mine) | paths_waiting(session, mine)
    return [p for p in mine if p not in kept]


def remove_uploads(settings: Settings, paths: Iterable[str]) -> int:
    """Delete these upload copies, and their request's folder once it is empty; the number of files deleted."""
    root, removed = uploads_dir(settings).resolve(), 0
    for path in map(Path, paths):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed += 1
        folder = path.resolve().parent
        with contextlib.suppress(OSError):  # not empty: another photo of the request is held
            while folder != root and folder.is_relative_to(root):
                folder.rmdir()
                folder = folder.parent
    return removed


def discard_unheld(app: App, paths: Iterable[str]) -> int:
    """After jobs finished: remove those of their upload copies that became no person's photo."""
    return remove_uploads(app.settings, unheld(app, paths))
