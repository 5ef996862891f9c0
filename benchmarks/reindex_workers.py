"""Re-index speed with one worker process against two, in one run.

    .venv/bin/python benchmarks/reindex_workers.py [--images 600] [--target dlib-resnet@1] [--json]

Enrolls the first N lfw-dev photos (by path) into a temporary store with the default
pack, copies the store twice (each copy rebound to its own vectors),
then runs `identity reindex --model TARGET` on one copy with
`--workers 1` and on the other with `--workers 2`, through the CLI as a user would.
Prints faces re-indexed per second for each and their ratio (the machine is noisy,
so only the ratio in one run means much).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
IDENTITY = [sys.executable, "-m", "identity_cli.main"]


def identity(data_dir: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {"IDENTITY_DATA_DIR": str(data_dir)}
    done = subprocess.run([*IDENTITY, *args, "--json"], env=env, capture_output=True, text=True)
    if done.returncode not in (0, 5):  # 5: some images failed, which the counts show
        raise SystemExit(f"identity {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--target", default="dlib-resnet@1")
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    photos = sorted(args.dataset.glob("*/*.jpg"))[: args.images]
    with tempfile.TemporaryDirectory(prefix="identity-reindex-") as tmp:
        folder = Path(tmp) / "photos"
        for photo in photos:
            (folder / photo.parent.name).mkdir(parents=True, exist_ok=True)
            (folder / photo.parent.name / photo.name).symlink_to(photo)
        base = Path(tmp) / "base"
        enrolled = identity(base, "enroll", str(folder))
        runs = {}
        for workers in (1, 2):
            data = Path(tmp) / f"workers-{workers}"
            shutil.copytree(base, data)
            identity(data, "init", "--rebind")  # a copy is another store: say it is this one's on purpose
            summary = identity(data, "reindex", "--model", args.target, "--workers", str(workers))
            runs[workers] = {
                "faces": summary["reindexed"],
                "seconds": summary["seconds"],
                "faces_per_second": round(summary["reindexed"] / summary["seconds"], 2),
            }
    result = {
        "images": len(photos),
        "enrolled_faces": enrolled["faces_enrolled"],
        "target": args.target,
        "workers_1": runs[1],
        "workers_2": runs[2],
        "speedup": round(runs[2]["faces_per_second"] / runs[1]["faces_per_second"], 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(
        title=f"identity reindex --model {args.target}: {result['enrolled_faces']} faces of {len(photos)} photos"
    )
    for column in ("workers", "faces", "seconds", "faces/s"):
        table.add_column(column)
    for workers, run in runs.items():
        table.add_row(str(workers), str(run["faces"]), f"{run['seconds']:.1f}", f"{run['faces_per_second']:.1f}")
    Console(width=120).print(table)
    print(f"2 workers / 1 worker: {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
