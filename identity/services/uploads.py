"""Where photos uploaded for enrollment are kept: `uploads/` under the data directory.

They are the enrolled photos (re-indexing and audit thumbnails read them again), so they
stay until erasure deletes them with their image rows (services.curation).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from identity.config import Settings


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def new_upload_folder(settings: Settings) -> Path:
    """A fresh folder for one request's photos."""
    folder = uploads_dir(settings) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder
