"""`identity faces ...`: run the face engine on image files and show what it sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from identity_cli.context import get_settings
from identity_cli.output import render

app = typer.Typer(no_args_is_help=True, help="Detect faces in images and inspect their quality.")

COLUMNS = ("image", "face", "bbox", "det_score", "iod_px", "blur", "yaw_deg", "roll_deg", "quality")
DIGITS = {"det_score": 2, "iod_px": 1, "blur": 0, "yaw_deg": 1, "roll_deg": 1}  # table precision


@app.command("detect")
def detect(
    # readable=False: an unreadable file is reported with the others, not a usage error that stops all.
    images: List[Path] = typer.Argument(..., readable=False, help="Image files (JPEG, PNG, WebP, BMP, TIFF, GIF)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    crops: Optional[Path] = typer.Option(None, "--crops", help="Write each face's aligned crop as a PNG here."),
) -> None:
    """Find the faces in each image, with detection scores, quality and rejection reasons.

    Exits 1 if an image cannot be read and 3 if an image holds no face (after
    showing the results of all the others).
    """
    from identity.errors import ImageError, NoFaceFound
    from identity.faces import build_pipeline, load_image
    from identity.app.registry import resolve_model, with_model

    settings = get_settings()
    pipeline = build_pipeline(with_model(settings, resolve_model(settings)))
    failures: list[Exception] = []
    loaded, reports = [], {}
    for path in images:
        try:
            loaded.append(load_image(path))
        except ImageError as exc:
            failures.append(exc)
            reports[str(path)] = {"image": str(path), "error": exc.reason, "faces": []}
    for result in pipeline.process(loaded):
        if not result.faces:
            failures.append(NoFaceFound(result.path))
        written = _write_crops(crops, result) if crops else []
        reports[result.path] = {
            "image": result.path,
            "sha256": result.sha256,
            "width": result.width,
            "height": result.height,
            "model": pipeline.model_id,
            "detector": result.detector,
            "faces": [
                {
                    "bbox": [round(v, 1) for v in face.bbox],
                    "landmarks": face.landmarks.astype(float).round(1).tolist(),
                    **face.quality.as_dict(),
                    "ok": face.quality.ok,
                    **({"crop": str(written[i])} if written else {}),
                }
                for i, face in enumerate(result.faces)
            ],
        }
    ordered = [reports[str(path)] for path in images]
    if as_json:
        render(ordered, as_json=True)
    else:
        render(_rows(ordered), as_json=False, columns=COLUMNS, title=f"faces ({pipeline.model_id})")
    if failures:
        # Image errors first: they are the more fundamental problem.
        raise next((f for f in failures if isinstance(f, ImageError)), failures[0])


def _rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for report in reports:
        if not report["faces"]:
            rows.append({"image": report["image"], "quality": report.get("error", "no face")})
        for index, face in enumerate(report["faces"]):
            rows.append(
                {
                    "image": report["image"],
                    "face": index,
                    "bbox": " ".join(f"{v:.0f}" for v in face["bbox"]),
                    **{key: f"{face[key]:.{digits}f}" for key, digits in DIGITS.items()},
                    "quality": "ok" if face["ok"] else ", ".join(face["rejections"]),
                }
            )
    return rows


def _write_crops(folder: Path, result: Any) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, face in enumerate(result.faces):
        path = folder / f"{Path(result.path).stem}-{result.sha256[:8]}-{index}.png"
        Image.fromarray(face.crop).save(path)
        paths.append(path)
    return paths
