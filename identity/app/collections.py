"""One model's vector collections as the App holds them."""

from __future__ import annotations

from dataclasses import dataclass

from identity.store.vectors import FaceIndex, VectorIndex


@dataclass(frozen=True)
class ModelCollections:
    """One model's face collection and its person templates: what changes a person's faces changes both."""

    faces: FaceIndex
    templates: VectorIndex
