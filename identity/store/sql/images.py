"""Image rows: one per distinct photo (content sha256), whoever's faces are on it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.store.sql.tables import Face, Image


def image_with_sha256(session: Session, sha256: str) -> Image | None:
    return session.scalars(select(Image).where(Image.sha256 == sha256)).one_or_none()


def images_with_sha256(session: Session, digests: Iterable[str]) -> dict[str, Image]:
    """The images held among these digests, by digest."""
    return {i.sha256: i for i in session.scalars(select(Image).where(Image.sha256.in_(set(digests))))}


def add_image(
    session: Session, sha256: str, source_path: str, size_bytes: int, width: int | None, height: int | None
) -> Image:
    """A new image row, flushed: its id is set (and a digest another writer stored first fails here)."""
    image = Image(sha256=sha256, source_path=source_path, size_bytes=size_bytes, width=width, height=height)
    session.add(image)
    session.flush()
    return image


IN_CHUNK = 500  # paths per IN (...) list


def paths_held(session: Session, paths: Sequence[str]) -> set[str]:
    """Those of `paths` that an image row holding at least one face names: a person's photo (erased with them)."""
    held: set[str] = set()
    for start in range(0, len(paths), IN_CHUNK):
        chunk = set(paths[start : start + IN_CHUNK])
        query = (
            select(Image.source_path)
            .where(Image.source_path.in_(chunk))
            .where(select(Face.id).where(Face.image_id == Image.id).exists())
        )
        held.update(session.scalars(query))
    return held
