"""`doctor`'s check of uploads/: files that no person's photo is (orphans), and their removal on repair.

The job loop removes an upload copy as soon as its job makes it nobody's photo (services.uploads);
what is left is a server killed in between, a job cancelled before it ran, or a copy from before
that rule. A file younger than a job lease is left alone: its request may still be queueing it.
"""

from __future__ import annotations

import time
from pathlib import Path

from identity.app.core import App
from identity.services.enrollment.uploads import remove_uploads, unheld, uploads_dir


def find_orphan_uploads(app: App) -> list[str]:
    """Files under uploads/ that no image row holding a face names and no open job will read."""
    root = uploads_dir(app.settings)
    if not root.is_dir():
        return []
    settled_before = time.time() - app.settings.enroll.lease_seconds
    files = [str(p) for p in sorted(root.rglob("*")) if _settled_file(p, settled_before)]
    return sorted(unheld(app, files))


def remove_orphan_uploads(app: App, paths: list[str]) -> dict[str, int]:
    """Delete the orphans found (doctor --repair); reported only where there were some."""
    removed = remove_uploads(app.settings, paths)
    return {"orphan_uploads_removed": removed} if removed else {}


def _settled_file(path: Path, settled_before: float) -> bool:
    try:
        return (path.is_file() or path.is_symlink()) and path.lstat().st_mtime < settled_before
    except OSError:
        return False
