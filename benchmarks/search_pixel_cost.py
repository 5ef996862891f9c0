"""What a search costs per megapixel, per pack: the figure IDENTITY_API__MAX_PIXELS_PER_REQUEST is sized from.

    .venv/bin/python benchmarks/search_pixel_cost.py [--photos 4] [--packs dlib-resnet,yunet-dlib-resnet] [--json]

Decodes, detects, aligns and embeds 12 MP photos made from lfw-dev faces (benchmarks/detection.py's,
same seed), the packs taking turns photo by photo in one process, and prints seconds per photo,
per MP, and what a request at the pixel limit would cost. A pack needing YuNet gets it installed
from ../shared/models into a temporary data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detection import YUNET_FILE, made_photos  # noqa: E402

from identity.config import ApiSettings, Settings  # noqa: E402
from identity.faces import build_pipeline, load_image  # noqa: E402
from identity.services.models.detectors import install_detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--packs", default="dlib-resnet,yunet-dlib-resnet")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "identity-detection-bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    photos = [Path(p.path) for p in made_photos(10, 7, args.work)][: args.photos]
    with tempfile.TemporaryDirectory() as data:
        if YUNET_FILE.exists():
            install_detector(Path(data), "yunet", YUNET_FILE)
        pipelines = {ref: build_pipeline(Settings(data_dir=Path(data), model=ref)) for ref in args.packs.split(",")}
        for pipeline in pipelines.values():  # weights loaded and caches warm before timing
            pipeline.process([load_image(photos[0])])
        seconds: dict[str, list[float]] = {ref: [] for ref in pipelines}
        megapixels = 0.0
        for path in photos:
            image = load_image(path)
            megapixels += image.width * image.height / 1e6
            for ref, pipeline in pipelines.items():
                started = time.perf_counter()
                pipeline.process([load_image(path)])
                seconds[ref].append(time.perf_counter() - started)
    limit_mp = ApiSettings().max_pixels_per_request / 1e6
    report = {
        ref: {
            "s_per_photo": sum(s) / len(s),
            "s_per_mp": sum(s) / megapixels,
            "s_at_pixel_limit": limit_mp * sum(s) / megapixels,
        }
        for ref, s in seconds.items()
    }
    if args.json:
        print(json.dumps({"photos": len(photos), "limit_mp": limit_mp, "packs": report}, indent=2))
        return
    for ref, row in report.items():
        print(
            f"{ref}: {row['s_per_photo']:.2f} s per 12 MP photo, {row['s_per_mp']:.3f} s/MP, "
            f"{row['s_at_pixel_limit']:.1f} s at the {limit_mp:g} MP request limit"
        )


if __name__ == "__main__":
    main()
