"""Face vector storage: one VectorIndex contract, two Qdrant engines and an exact baseline.

``open_vector_index`` picks the engine from Settings: Qdrant Edge under the data
directory when no ``qdrant_url`` is set, else a Qdrant server (``:memory:``: qdrant-client's
local mode). Engine classes are imported on first use, since qdrant-client alone takes
most of a second to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from identity.config import Settings
from identity.errors import ConfigError
from identity.store.vectors.base import (
    FaceIndex,
    PersonHit,
    VectorHit,
    VectorIndex,
    VectorPoint,
    collection_name,
)

if TYPE_CHECKING:
    from identity.store.vectors.edge import EdgeIndex
    from identity.store.vectors.exact import ExactIndex
    from identity.store.vectors.server import QdrantServerIndex

__all__ = [
    "EdgeIndex",
    "ExactIndex",
    "FaceIndex",
    "PersonHit",
    "QdrantServerIndex",
    "VectorHit",
    "VectorIndex",
    "VectorPoint",
    "check_free_space",
    "collection_name",
    "open_vector_index",
    "remove_set_aside_shards",
    "set_aside_shard",
]

_LAZY = {
    "EdgeIndex": "identity.store.vectors.edge",
    "ExactIndex": "identity.store.vectors.exact",
    "QdrantServerIndex": "identity.store.vectors.server",
}


def open_vector_index(settings: Settings, model_id: str, dim: int) -> FaceIndex:
    """Open one model's face collection (created if missing); its templates come from `.templates()`."""
    check_vector_settings(settings)
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    if settings.embedded:
        from identity.store.vectors.edge import EdgeIndex

        return EdgeIndex.open(settings, model_id, dim)
    from identity.store.vectors.server import QdrantServerIndex

    return QdrantServerIndex.open(settings, model_id, dim)


def check_free_space(settings: Settings) -> None:
    """Before a chunk of writes: NoSpace when the embedded store's disk could not back its growth
    (identity.store.vectors.space); a Qdrant server manages its own disk."""
    if settings.embedded:
        from identity.store.vectors.space import ensure_space

        ensure_space(settings.edge_dir, settings.vectors.preallocate)


def set_aside_shard(settings: Settings, path: str) -> str:
    """Move an embedded shard the engine cannot open aside (doctor --repair rebuilds it); returns where it went."""
    from pathlib import Path

    from identity.store.vectors.edge import set_aside_shard as move

    return str(move(settings, Path(path)))


def remove_set_aside_shards(settings: Settings) -> list[str]:
    """Remove the damaged shards doctor set aside (they hold biometric bytes no erasure would reach)."""
    if not settings.embedded:
        return []
    from identity.store.vectors.edge import remove_set_aside

    return [str(path) for path in remove_set_aside(settings.edge_dir)]


def check_vector_settings(settings: Settings) -> None:
    """Refuse settings that name two engines, or one engine half-way."""
    url = settings.qdrant_url
    if url is None:
        if settings.qdrant_api_key:
            raise ConfigError(
                "qdrant_api_key is set but qdrant_url is not: set IDENTITY_QDRANT_URL to use a Qdrant "
                "server, or unset the key to use the embedded store"
            )
        return
    if url == ":memory:":
        if settings.qdrant_api_key:
            raise ConfigError("qdrant_api_key is set but qdrant_url is ':memory:' (local mode takes no key)")
        return
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"qdrant_url {url!r} is not http(s)://host:port or ':memory:'; "
            "unset it to use the embedded store under the data directory"
        )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
