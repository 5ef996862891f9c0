"""Face detection: recall by face size, false detections, CPU time and peak memory of every detector, in one run.

    .venv/bin/python benchmarks/detection.py [--packs dlib-resnet,yunet-dlib-resnet] [--raw hog0,hog1,hog2,yunet]
        [--yunet ../shared/models/yunet_n_dynamic.onnx] [--made 10] [--lfw 150] [--det-limit N]
        [--budget-s 120] [--seed 7] [--work DIR] [--json]

Data sets:
- det-dev (`../shared/datasets/det-dev`): real group photos, every face annotated (truth.json).
- made 12 MP: 4032x3024 photos made here (seeded) from lfw-dev photos scaled so their face has a
  chosen height and placed apart on a smooth background; each photo holds faces in every band
  (< 40, 40-80, 80-160, > 160 px) and four of 65-90 px. A placed face's truth box is dlib HOG's
  box on the 250x250 original, moved by the placement. The photos also hold unannotated faces
  (LFW backgrounds), so false detections are not counted on them.
- lfw-dev: `--lfw` photos (one per person, sorted), for the cost of a typical small photo and
  the share of photos where any face is found.

A detection matches a truth box at IoU >= 0.4, greedily by IoU, at most one detection per box.
Each detector runs in its own process (its peak RSS is that process's high-water mark, models
included); CPU ms counts every thread of that process. A detector stops on a data set when its
CPU time there passes `--budget-s`: its row then covers the photos it finished ("photos" column).

Detectors: each pack in `--packs` as the product runs it (`build_pack(ref, settings).detector`,
with the settings of the environment, e.g. IDENTITY_FACES__MIN_FACE_PX); a pack that cannot be
built or loaded is listed as skipped with the reason. Raw reference stages: dlib HOG on the
whole photo at upsample 0, 1, 2 and YuNet through cv2.FaceDetectorYN (score >= 0.8) on the
whole photo.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DET_DEV = SHARED / "datasets" / "det-dev"
LFW_DEV = SHARED / "datasets" / "lfw-dev"
YUNET_FILE = SHARED / "models" / "yunet_n_dynamic.onnx"
MATCH_IOU = 0.4
BANDS = {"<40": (0, 40), "40-80": (40, 80), "80-160": (80, 160), ">160": (160, 10_000), "65-90": (65, 90)}
MADE_SIZE = (4032, 3024)
# Face heights placed in each made photo: one draw per entry, uniform in its range (px).
MADE_HEIGHTS = [
    (24, 40),
    (24, 40),
    (40, 65),
    (40, 65),
    (65, 90),
    (65, 90),
    (65, 90),
    (65, 90),
    (90, 160),
    (90, 160),
    (160, 320),
]
YUNET_SCORE = 0.8
RAW = ("hog0", "hog1", "hog2", "yunet")

Box = tuple[float, float, float, float]


@dataclass
class Photo:
    path: str
    truth: list[Box]


@dataclass
class Result:
    """One detector on one data set."""

    photos: int = 0
    megapixels: float = 0.0
    cpu_s: float = 0.0
    faces: int = 0
    found: int = 0
    false: int = 0
    with_any_face: int = 0
    band_faces: dict[str, int] = field(default_factory=dict)
    band_found: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- matching


def iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(truth: list[Box], found: list[Box]) -> list[bool]:
    """Which truth boxes a detection matches: pairs at IoU >= MATCH_IOU, best first, each used once."""
    pairs = sorted(((iou(t, f), ti, fi) for ti, t in enumerate(truth) for fi, f in enumerate(found)), reverse=True)
    matched, used = [False] * len(truth), set()
    for overlap, ti, fi in pairs:
        if overlap < MATCH_IOU:
            break
        if not matched[ti] and fi not in used:
            matched[ti] = True
            used.add(fi)
    return matched


def band_of(box: Box) -> list[str]:
    height = box[3] - box[1]
    return [name for name, (low, high) in BANDS.items() if low <= height < high]


# ---------------------------------------------------------------- data sets


def det_dev(limit: int | None) -> list[Photo]:
    truth = json.loads((DET_DEV / "truth.json").read_text())
    names = sorted(truth)[:limit]
    return [Photo(str(DET_DEV / "images" / name), [tuple(map(float, b)) for b in truth[name]]) for name in names]


def lfw_photos(count: int) -> list[Photo]:
    people = sorted(p for p in LFW_DEV.iterdir() if p.is_dir())
    return [Photo(str(sorted(person.iterdir())[0]), []) for person in people[:count]]


def made_photos(count: int, seed: int, folder: Path) -> list[Photo]:
    """`count` 12 MP photos of lfw-dev faces at known heights (cached in folder by seed and count)."""
    index = folder / f"made-{seed}-{count}.json"
    if index.exists():
        return [Photo(p["path"], [tuple(b) for b in p["truth"]]) for p in json.loads(index.read_text())]
    import dlib

    from identity.faces import load_image

    hog = dlib.get_frontal_face_detector()
    rng = np.random.default_rng(seed)
    sources = [sorted(p.iterdir())[0] for p in sorted(LFW_DEV.iterdir()) if p.is_dir()]
    rng.shuffle(sources)
    source_iter = iter(sources)
    photos = []
    for number in range(count):
        canvas = background(rng)
        taken: list[Box] = []
        truth: list[Box] = []
        for low, high in MADE_HEIGHTS:
            rgb, face = next_face(source_iter, hog, load_image)
            height = rng.uniform(low, high)
            scale = height / (face[3] - face[1])
            tile = cv2.resize(
                rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            )
            spot = free_spot(rng, tile.shape[1], tile.shape[0], taken)
            if spot is None:
                continue
            x, y = spot
            canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            taken.append((x, y, x + tile.shape[1], y + tile.shape[0]))
            truth.append((x + face[0] * scale, y + face[1] * scale, x + face[2] * scale, y + face[3] * scale))
        path = folder / f"made-{seed}-{number:03d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos.append(Photo(str(path), truth))
    index.write_text(json.dumps([asdict(p) for p in photos]))
    return photos


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour blotches, so no detector sees a flat frame (cheap: upscaled low-resolution noise)."""
    small = rng.integers(40, 220, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, MADE_SIZE, interpolation=cv2.INTER_CUBIC)


def next_face(sources, hog, load_image) -> tuple[np.ndarray, Box]:
    """The next lfw-dev photo whose HOG box (upsample 1) near the centre gives the face's truth box."""
    for path in sources:
        rgb = load_image(path).rgb
        rects = hog(rgb, 1)
        central = [
            r
            for r in rects
            if abs((r.left() + r.right()) / 2 - 125) < 30 and abs((r.top() + r.bottom()) / 2 - 125) < 40
        ]
        if len(central) == 1:
            r = central[0]
            return rgb, (float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1))
    raise RuntimeError("lfw-dev ran out of photos for the made set")


def free_spot(rng: np.random.Generator, width: int, height: int, taken: list[Box]) -> tuple[int, int] | None:
    for _ in range(200):
        x = int(rng.integers(0, MADE_SIZE[0] - width))
        y = int(rng.integers(0, MADE_SIZE[1] - height))
        box = (x, y, x + width, y + height)
        if all(iou(box, other) == 0.0 for other in taken):
            return x, y
    return None


# ---------------------------------------------------------------- detectors (run in a child process)


def make_detector(name: str, yunet: Path) -> Callable[[np.ndarray], list[Box]]:
    """A function from an RGB photo to boxes; raises with the reason when the detector cannot run."""
    if name.startswith("pack:"):
        from identity.config import Settings
        from identity.faces import build_pack

        detector = build_pack(name[5:], Settings.load()).detector
        detector.load()
        return lambda rgb: [d.bbox for d in detector.detect(rgb)[0]]
    if name.startswith("hog"):
        import dlib

        hog, upsample = dlib.get_frontal_face_detector(), int(name[3:])
        return lambda rgb: [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in hog(rgb, upsample)]
    if name == "yunet":
        if not yunet.is_file():
            raise FileNotFoundError(f"no YuNet file at {yunet} (--yunet)")
        model = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), YUNET_SCORE, 0.3, 5000)

        def run(rgb: np.ndarray) -> list[Box]:
            model.setInputSize((rgb.shape[1], rgb.shape[0]))
            _, faces = model.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return [] if faces is None else [(f[0], f[1], f[0] + f[2], f[1] + f[3]) for f in faces]

        return run
    raise ValueError(f"unknown detector {name!r}")


def child(name: str, sets: dict[str, list[Photo]], yunet: Path, budget_s: float) -> dict:
    from identity.faces import load_image

    try:
        detect = make_detector(name, yunet)
    except Exception as exc:  # a pack that cannot be built or loaded: listed as skipped with its reason
        return {"skipped": " ".join(str(exc).split())[:200] or type(exc).__name__}
    results = {}
    for set_name, photos in sets.items():
        result = Result()
        for photo in photos:
            rgb = load_image(photo.path).rgb
            started = time.process_time()
            boxes = [tuple(map(float, b)) for b in detect(rgb)]
            result.cpu_s += time.process_time() - started
            result.photos += 1
            result.megapixels += rgb.shape[0] * rgb.shape[1] / 1e6
            result.with_any_face += bool(boxes)
            matched = match(photo.truth, boxes)
            result.faces += len(photo.truth)
            result.found += sum(matched)
            result.false += len(boxes) - sum(matched)
            for box, hit in zip(photo.truth, matched):
                for band in band_of(box):
                    result.band_faces[band] = result.band_faces.get(band, 0) + 1
                    result.band_found[band] = result.band_found.get(band, 0) + hit
            if result.cpu_s > budget_s:
                break
        results[set_name] = asdict(result)
    return {"sets": results, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------- report


def summary(result: dict, with_false: bool) -> dict:
    photos = max(result["photos"], 1)
    row = {
        "photos": result["photos"],
        "recall": result["found"] / result["faces"] if result["faces"] else None,
        "faces": result["faces"],
        "bands": {b: {"faces": n, "recall": result["band_found"][b] / n} for b, n in result["band_faces"].items()},
        "with_any_face": result["with_any_face"] / photos,
        "cpu_ms_per_photo": 1000 * result["cpu_s"] / photos,
        "cpu_ms_per_mp": 1000 * result["cpu_s"] / max(result["megapixels"], 1e-9),
    }
    if with_false:
        row["false_per_photo"] = result["false"] / photos
    return row


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    det_total, made_total = report["photos"]["det-dev"], report["photos"]["made-12mp"]
    det_table = Table(title=f"det-dev ({det_total} photos; IoU >= 0.4)")
    made_table = Table(title=f"made 12 MP ({made_total} photos) and lfw-dev ({report['photos']['lfw-dev']} photos)")
    for column in ("detector", "recall", "<40", "40-80", "80-160", ">160", "false/photo", "CPU ms/photo", "CPU ms/MP"):
        det_table.add_column(column, justify="left" if column == "detector" else "right")
    for column in (
        "detector",
        "recall",
        "<40",
        "40-80",
        "65-90",
        "80-160",
        ">160",
        "CPU ms/photo",
        "CPU ms/MP",
        "lfw CPU ms/photo",
        "lfw any face",
        "peak RSS MB",
    ):
        made_table.add_column(column, justify="left" if column == "detector" else "right")
    for name, entry in report["detectors"].items():
        if "skipped" in entry:
            det_table.add_row(name, f"skipped: {entry['skipped']}")
            made_table.add_row(name, "skipped")
            continue
        det, made, lfw = (entry["sets"].get(k) for k in ("det-dev", "made-12mp", "lfw-dev"))
        det_table.add_row(
            name,
            recall(det, det_total),
            *bands(det, ("<40", "40-80", "80-160", ">160")),
            f"{det['false_per_photo']:.2f}",
            f"{det['cpu_ms_per_photo']:.0f}",
            f"{det['cpu_ms_per_mp']:.0f}",
        )
        made_table.add_row(
            name,
            recall(made, made_total),
            *bands(made, ("<40", "40-80", "65-90", "80-160", ">160")),
            f"{made['cpu_ms_per_photo']:.0f}",
            f"{made['cpu_ms_per_mp']:.0f}",
            f"{lfw['cpu_ms_per_photo']:.0f}",
            percent(lfw["with_any_face"]),
            f"{entry['peak_rss_mb']:.0f}",
        )
    console.print(det_table)
    console.print(made_table)
    console.print(
        "faces per band, det-dev / made: "
        + ", ".join(
            f"{b} {report['band_faces']['det-dev'].get(b, 0)}/{report['band_faces']['made-12mp'].get(b, 0)}"
            for b in BANDS
        )
    )


def recall(row: dict, total: int) -> str:
    """The recall, and how many photos it covers when the CPU budget stopped the detector early."""
    return percent(row["recall"]) + (f" ({row['photos']}/{total} photos)" if row["photos"] < total else "")


def bands(row: dict, names: tuple[str, ...]) -> list[str]:
    return [percent(row["bands"][name]["recall"]) if name in row["bands"] else "-" for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", default="dlib-resnet,yunet-dlib-resnet", help="pack references, comma-separated")
    parser.add_argument(
        "--raw", default=",".join(RAW), help=f"raw reference stages among {', '.join(RAW)} ('' for none)"
    )
    parser.add_argument("--yunet", type=Path, default=YUNET_FILE)
    parser.add_argument("--made", type=int, default=10, help="12 MP photos to make")
    parser.add_argument("--lfw", type=int, default=150, help="lfw-dev photos (one per person) for the small-photo cost")
    parser.add_argument("--det-limit", type=int, default=None, help="only the first N det-dev photos")
    parser.add_argument("--budget-s", type=float, default=120.0, help="CPU seconds per detector and data set")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "identity-detection-bench")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    sets = {
        "det-dev": det_dev(args.det_limit),
        "made-12mp": made_photos(args.made, args.seed, args.work),
        "lfw-dev": lfw_photos(args.lfw),
    }
    if args.child:
        print(json.dumps(child(args.child, sets, args.yunet, args.budget_s)))
        return

    names = [f"pack:{p}" for p in args.packs.split(",") if p] + [r for r in args.raw.split(",") if r]
    report: dict = {
        "photos": {k: len(v) for k, v in sets.items()},
        "band_faces": {k: {} for k in sets},
        "detectors": {},
        "settings": vars(args) | {"work": str(args.work), "yunet": str(args.yunet)},
    }
    for set_name in ("det-dev", "made-12mp"):
        for photo in sets[set_name]:
            for box in photo.truth:
                for band in band_of(box):
                    report["band_faces"][set_name][band] = report["band_faces"][set_name].get(band, 0) + 1
    for name in names:
        command = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--yunet",
            str(args.yunet),
            "--made",
            str(args.made),
            "--lfw",
            str(args.lfw),
            "--budget-s",
            str(args.budget_s),
            "--seed",
            str(args.seed),
            "--work",
            str(args.work),
        ]
        if args.det_limit is not None:
            command += ["--det-limit", str(args.det_limit)]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            report["detectors"][name] = {"skipped": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
            continue
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        if "skipped" not in raw:
            raw["sets"] = {k: summary(v, with_false=k == "det-dev") for k, v in raw["sets"].items()}
        report["detectors"][name] = raw
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
