"""Labelled folders and the protocols run on them (see shared/datasets/README.md).

Identification with N gallery images (default 1): the first N images (by file name) of
every person with at least N+1 images are the gallery and their other images the probes;
everyone else contributes only their first image, to the gallery, as a distractor.
Verification: genuine pairs within a person, impostor pairs across persons, drawn
with a fixed seed. In a photo with several faces the subject is the face nearest the
image centre (as in LFW-style labelled folders).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from identity.errors import IdentityError
from identity.faces import DetectedFace, ImageFaces
from identity.faces.types import central_face

Pair = tuple[str, str]


@dataclass(frozen=True)
class LabelledFolder:
    root: Path
    images: dict[str, list[str]]  # person -> image paths, sorted by file name

    @property
    def persons(self) -> list[str]:
        return sorted(self.images)

    @property
    def all_paths(self) -> list[str]:
        return [p for person in self.persons for p in self.images[person]]

    def subset(self, persons: Sequence[str]) -> LabelledFolder:
        """The same folder restricted to some persons (benchmarks split a folder this way)."""
        return LabelledFolder(self.root, {person: self.images[person] for person in persons})

    def split(self, gallery_images: int = 1) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(gallery, probes) as (person, path) lists under the identification protocol above."""
        gallery: list[tuple[str, str]] = []
        probes: list[tuple[str, str]] = []
        for person in self.persons:
            paths = self.images[person]
            if len(paths) > gallery_images:
                gallery += [(person, path) for path in paths[:gallery_images]]
                probes += [(person, path) for path in paths[gallery_images:]]
            else:
                gallery.append((person, paths[0]))
        return gallery, probes


def scan_labelled(root: Path) -> LabelledFolder:
    """PERSON/IMAGE files under root; hidden files are skipped. Raises on an unusable folder."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise IdentityError(f"{root}: not a directory (expected one sub-folder per person)")
    images: dict[str, list[str]] = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(str(f) for f in person.iterdir() if f.is_file() and not f.name.startswith("."))
        if files:
            images[person.name] = files
    if not images:
        raise IdentityError(f"{root}: no labelled images (expected PERSON/IMAGE files)")
    if len(images) < 2:
        raise IdentityError(f"{root}: only one person ({next(iter(images))}); evaluation needs at least two")
    return LabelledFolder(root, images)


def genuine_pairs(folder: LabelledFolder, cap: int, seed: int) -> list[Pair]:
    """Every within-person pair, or a seeded sample of `cap` of them."""
    pairs = [
        (a, b)
        for person in folder.persons
        for i, a in enumerate(folder.images[person])
        for b in folder.images[person][i + 1 :]
    ]
    if len(pairs) > cap:
        pairs = sorted(random.Random(seed).sample(pairs, cap))
    return pairs


def impostor_pairs(folder: LabelledFolder, count: int, seed: int) -> list[Pair]:
    """`count` distinct cross-person pairs (persons drawn uniformly, then one image of each)."""
    rng = random.Random(seed + 1)
    names = folder.persons
    possible = sum(len(v) for v in folder.images.values()) ** 2
    count = min(count, possible // 4)
    found: set[Pair] = set()
    while len(found) < count:
        first, second = rng.sample(names, 2)
        a, b = sorted((rng.choice(folder.images[first]), rng.choice(folder.images[second])))
        found.add((a, b))
    return sorted(found)


def subject_face(found: ImageFaces) -> DetectedFace | None:
    """The labelled subject of a photo: the face whose box centre is nearest the image centre."""
    index = central_face([face.bbox for face in found.faces], found.width, found.height)
    return None if index is None else found.faces[index]
