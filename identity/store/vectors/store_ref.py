"""Which vector store a process would use, named so SQL can record it and compare.

- the embedded store: ``edge:<abs edge dir>#<store id>``; the id is a uuid written once
  into ``<edge dir>/store_id``, so a data directory that moved is still the same store
  and a fresh one (no id yet) never is;
- a Qdrant server: ``qdrant:<url>``;
- ``:memory:`` (qdrant-client's local mode): a store that lives and dies with one process,
  so it is never bound and never refused.

Reading a reference creates nothing; ``create_store_id`` writes the id file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from identity.config import Settings
from identity.errors import StoreUnavailable
from identity.fsutil import fsync_dir

STORE_ID_FILE = "store_id"
MEMORY = ":memory:"


@dataclass(frozen=True)
class StoreRef:
    kind: str  # "edge", "qdrant" or "memory"
    location: str  # the edge directory (absolute) or the server URL
    store_id: str | None = None  # edge only; None while the directory holds no store id

    @property
    def uri(self) -> str:
        if self.kind == "edge":
            return f"edge:{self.location}#{self.store_id or 'new'}"
        return f"qdrant:{self.location}"

    @classmethod
    def parse(cls, uri: str) -> StoreRef:
        kind, _, rest = uri.partition(":")
        if kind == "edge":
            location, _, store_id = rest.rpartition("#")
            return cls("edge", location, store_id or None)
        if kind == "qdrant":
            return cls("memory" if rest == MEMORY else "qdrant", rest)
        raise StoreUnavailable(f"the database names an unknown kind of vector store {uri!r}")

    def same_store(self, other: StoreRef) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "edge":
            return self.store_id is not None and self.store_id == other.store_id
        return self.location == other.location


def vector_store_ref(settings: Settings) -> StoreRef:
    """The store these settings point at, as it is now (nothing is created)."""
    if settings.qdrant_url == MEMORY:
        return StoreRef("memory", MEMORY)
    if settings.qdrant_url:
        return StoreRef("qdrant", settings.qdrant_url.rstrip("/"))
    edge_dir = settings.edge_dir.expanduser().resolve()
    return StoreRef("edge", str(edge_dir), read_store_id(edge_dir))


def read_store_id(edge_dir: Path) -> str | None:
    try:
        text = (edge_dir / STORE_ID_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        corrupt = f"{edge_dir / STORE_ID_FILE} is corrupt ({text[:40]!r}): it should hold a uuid"
        raise StoreUnavailable(corrupt) from None


def create_store_id(settings: Settings) -> StoreRef:
    """The embedded store's reference, giving its directory an id if it has none yet."""
    ref = vector_store_ref(settings)
    if ref.kind != "edge" or ref.store_id:
        return ref
    edge_dir = Path(ref.location)
    edge_dir.mkdir(parents=True, exist_ok=True)
    tmp = edge_dir / f"{STORE_ID_FILE}.{os.getpid()}.tmp"
    tmp.write_text(str(uuid.uuid4()) + "\n")
    with open(tmp) as handle:
        os.fsync(handle.fileno())
    try:
        os.link(tmp, edge_dir / STORE_ID_FILE)  # fails if another process gave it an id first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    fsync_dir(edge_dir)
    return vector_store_ref(settings)
