"""The torch port of dlib's face ResNet against dlib itself: agreement and speed on lfw-dev faces.

    .venv/bin/python benchmarks/dlib_port.py [--dataset DIR] [--faces 500] [--seed 20240]

Chips are cut once by the default pack (dlib's 150x150 chip), mirrored copies added,
then embedded by dlib's own C++ network (the baseline) and by the port
(identity.faces.dlib_torch, weights read from the same .dat). Prints the cosine and
largest absolute difference between the two descriptors, and the milliseconds per
chip of each with the same number of threads, as a ratio.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import dlib
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from identity.config import Settings
from identity.faces import build_pipeline, load_image
from identity.faces.dlib_torch import chips_to_tensor, dlib_model_path, load_dlib_resnet

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20240)
    args = parser.parse_args()
    console = Console()
    paths = sorted(args.dataset.glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no images under {args.dataset}")
    paths = random.Random(args.seed).sample(paths, min(args.faces, len(paths)))
    pipeline = build_pipeline(Settings(model="dlib-resnet@2"))
    chips = np.stack([f.crop for result in pipeline.process([load_image(p) for p in paths]) for f in result.faces[:1]])
    chips = np.concatenate([chips, chips[:, :, ::-1]])
    dlib_net = dlib.face_recognition_model_v1(str(dlib_model_path()))  # dlib's own C++ network, the baseline
    start = time.perf_counter()
    reference = np.concatenate(
        [
            np.array(dlib_net.compute_face_descriptor(list(chips[i : i + BATCH])), dtype=np.float32)
            for i in range(0, len(chips), BATCH)
        ]
    )
    dlib_seconds = time.perf_counter() - start
    net = load_dlib_resnet()
    start = time.perf_counter()
    with torch.inference_mode():
        ported = np.concatenate(
            [net(chips_to_tensor(chips[i : i + BATCH])).numpy() for i in range(0, len(chips), BATCH)]
        )
    torch_seconds = time.perf_counter() - start
    cosine = (ported * reference).sum(1) / np.linalg.norm(ported, axis=1) / np.linalg.norm(reference, axis=1)
    table = Table(
        title=f"{len(chips)} chips ({len(chips) // 2} lfw-dev faces and their mirror images)"
        f", torch threads {torch.get_num_threads()}"
    )
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("cosine(port, dlib) min / mean", f"{cosine.min():.7f} / {cosine.mean():.7f}")
    table.add_row("max |port - dlib|", f"{np.abs(ported - reference).max():.2e}")
    table.add_row("dlib ms per chip (baseline)", f"{1000 * dlib_seconds / len(chips):.1f}")
    table.add_row("port ms per chip", f"{1000 * torch_seconds / len(chips):.1f}")
    table.add_row("port time / dlib time", f"{torch_seconds / dlib_seconds:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
