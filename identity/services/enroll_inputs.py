"""Where enrollment jobs come from: a folder per person, a CSV manifest, or a file list.

Each source yields JobSpecs with absolute paths; nothing is read from the images here,
so queuing tens of thousands of files is quick.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Sequence

from identity.errors import IdentityError
from identity.store.sql.jobs import JobSpec

MANIFEST_REQUIRED = ("path", "external_id")
MANIFEST_KNOWN = MANIFEST_REQUIRED + ("display_name",)


def from_directory(root: Path) -> Iterator[JobSpec]:
    """ROOT/<external id>/<image files>; hidden files and loose files in ROOT are skipped."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise IdentityError(f"{root}: not a directory (expected one sub-folder per person)")
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(person_dir.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(person_dir).parts):
                yield JobSpec(source_path=str(path), external_id=person_dir.name)


def from_manifest(manifest: Path) -> Iterator[JobSpec]:
    """CSV with columns path, external_id, optional display_name; other columns become attributes."""
    manifest = manifest.expanduser().resolve()
    try:
        handle = manifest.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise IdentityError(f"{manifest}: cannot read manifest ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise IdentityError(f"{manifest}: manifest lacks column(s) {', '.join(missing)}")
        extra = [c for c in reader.fieldnames or [] if c not in MANIFEST_KNOWN]
        for line, row in enumerate(reader, start=2):
            path, external_id = (row.get("path") or "").strip(), (row.get("external_id") or "").strip()
            if not path or not external_id:
                raise IdentityError(f"{manifest}:{line}: path and external_id must not be empty")
            resolved = Path(path).expanduser()
            if not resolved.is_absolute():
                resolved = manifest.parent / resolved
            attributes = {c: row[c] for c in extra if row.get(c) not in (None, "")}
            yield JobSpec(str(resolved.resolve()), external_id, (row.get("display_name") or None), attributes or None)


def from_files(external_id: str, paths: Sequence[Path], display_name: str | None = None) -> Iterator[JobSpec]:
    for path in paths:
        yield JobSpec(str(path.expanduser().resolve()), external_id, display_name)
