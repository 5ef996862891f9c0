"""Uploaded files: written to a scratch folder under their own (sanitised) names, within a size limit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from starlette.datastructures import UploadFile  # FastAPI's is a subclass; a parsed form gives this one

from identity.api.errors import ApiError

CHUNK = 1 << 20


def safe_name(name: str | None, index: int) -> str:
    """The upload's file name without folders or odd characters (it names the image in the search log)."""
    base = Path(name or "").name
    cleaned = re.sub(r"[^\w.\-]+", "_", base).strip("._")
    return cleaned[:120] or f"upload-{index}"


async def save_uploads(files: Sequence[UploadFile], folder: Path, max_bytes: int) -> list[tuple[str, Path]]:
    """(name as uploaded, where it was written) per file, in order; 413 once the total passes `max_bytes`."""
    saved: list[tuple[str, Path]] = []
    total = 0
    for index, upload in enumerate(files):
        name = safe_name(upload.filename, index)
        target = folder / f"{index:03d}" / name  # one folder each: two uploads may share a name
        target.parent.mkdir(parents=True)
        with target.open("wb") as out:
            while chunk := await upload.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise ApiError(
                        413,
                        f"the upload is larger than the limit of {max_bytes / 1e6:g} MB",
                        {"limit_bytes": max_bytes},
                    )
                out.write(chunk)
        saved.append((upload.filename or name, target))
    return saved
