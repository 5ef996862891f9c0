"""How a chunk of image files is analysed, in whichever worker (process or thread) runs it.

Workers read the files themselves (pixels never cross process boundaries) and return
results a chunk at a time. The executors (identity.faces.executor) run these chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from identity.errors import ImageError, ModelError
from identity.faces.images import load_image
from identity.faces.pipeline import FacePipeline
from identity.faces.types import ImageFaces, LoadedImage

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8  # images per task: enough to batch the recognizer, small enough to keep workers busy

Analysed = tuple[str, ImageFaces | ImageError]
# ImageError does not survive pickling (its __init__ takes two arguments), so workers send (path, reason).
_WireOutcome = tuple[str, ImageFaces | tuple[str, str]]


def analyse_chunk(pipeline: FacePipeline, paths: list[str]) -> list[_WireOutcome]:
    """Load and process a few files with one pipeline call; unreadable files become (path, reason)."""
    outcomes: list[ImageFaces | tuple[str, str] | None] = [None] * len(paths)
    loaded: list[tuple[int, LoadedImage]] = []
    for index, path in enumerate(paths):
        try:
            loaded.append((index, load_image(path)))
        except ImageError as exc:
            outcomes[index] = (exc.path, exc.reason)
        except Exception as exc:  # a decoder choking on odd bytes: this image's failure, not the pool's
            outcomes[index] = (path, _failure(exc))
    for (index, _), result in zip(loaded, _process_images(pipeline, [image for _, image in loaded])):
        outcomes[index] = result
    return [(path, outcome) for path, outcome in zip(paths, outcomes) if outcome is not None]


def _process_images(pipeline: FacePipeline, images: list[LoadedImage]) -> list[ImageFaces | tuple[str, str]]:
    """One pipeline call for the batch; if it raises, one call per image, so an exception is that image's failure.

    A model that cannot load concerns every image: ModelError, or whatever loading raises, propagates.
    """
    try:
        return list(pipeline.process(images))
    except ModelError:
        raise
    except Exception as exc:
        logger.debug("batch of %d images raised %r; processing them one by one", len(images), exc)
    pipeline.load()
    results: list[ImageFaces | tuple[str, str]] = []
    for image in images:
        try:
            results.extend(pipeline.process([image]))
        except ModelError:
            raise
        except Exception as exc:
            logger.warning("%s: %s", image.path, _failure(exc))
            results.append((image.path, _failure(exc)))
    return results


def _failure(exc: Exception) -> str:
    return f"processing failed: {type(exc).__name__}: {exc}"


def revive(outcomes: list[_WireOutcome]) -> Iterator[Analysed]:
    for path, value in outcomes:
        yield path, (ImageError(*value) if isinstance(value, tuple) else value)
