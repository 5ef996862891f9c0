"""Fixtures of the face-engine tests: real images (t1.jpg ships with insightface, lfw-dev
is optional) and one dlib pipeline per test session, so dlib's models load once.

Every test image is built in a temporary directory; none is committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from identity.config import FaceSettings, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw-dev"


@pytest.fixture(scope="session")
def t1_path() -> Path:
    """insightface's sample group photo: six faces."""
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


@pytest.fixture(scope="session")
def lfw() -> Path:
    if not LFW.is_dir():
        pytest.skip(f"lfw-dev not found at {LFW}")
    return LFW


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Defaults, not the environment: tests must not depend on a developer's config."""
    return Settings(faces=FaceSettings())


@pytest.fixture(scope="session")
def dlib_pipeline(settings: Settings):
    from identity.faces import build_pipeline

    return build_pipeline(settings)


@pytest.fixture(scope="session")
def t1_faces(dlib_pipeline, t1_path: Path):
    """t1.jpg through the default pipeline, computed once."""
    from identity.faces import load_image

    [result] = dlib_pipeline.process([load_image(t1_path)])
    return result


@pytest.fixture(scope="session")
def one_face(t1_path: Path) -> Image.Image:
    """A 250x280 cut of t1.jpg holding one upright face."""
    return Image.open(t1_path).convert("RGB").crop((380, 220, 630, 500))
