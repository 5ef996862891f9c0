"""`identity faces ...`: run the face engine on image files and show what it sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from identity_cli.context import open_app
from identity_cli.output import render, warn_capped, warn_scan_limited

app = typer.Typer(no_args_is_help=True, help="Detect faces in images and inspect their quality.")

COLUMNS = ("image", "face", "bbox", "detector", "det_score", "iod_px", "blur", "yaw_deg", "roll_deg", "quality")
DIGITS = {"det_score": 2, "iod_px": 1, "blur": 0, "yaw_deg": 1, "roll_deg": 1}  # table precision


@app.command("detect")
def detect(
    # readable=False: an unreadable file is reported with the others, not a usage error that stops all.
    images: list[Path] = typer.Argument(..., readable=False, help="Image files (JPEG, PNG, WebP, BMP, TIFF, GIF)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    crops: Path | None = typer.Option(None, "--crops", help="Write each face's aligned crop as a PNG here."),
) -> None:
    """Find the faces in each image, with detection scores, quality and rejection reasons.

    Exits 1 if an image cannot be read and 3 if an image holds no face (after
    showing the results of all the others).
    """
    from identity.services.search.detect import detect_faces

    with open_app() as core:
        report = detect_faces(core, images, crops)
    ordered = report.as_list()
    if as_json:
        render(ordered, as_json=True)
    else:
        render(_rows(ordered), as_json=False, columns=COLUMNS, title=f"faces ({report.model})")
    for record in ordered:
        if record.get("capped"):
            warn_capped(record["image"], record["capped"])
        if record.get("scan_limited_px"):
            warn_scan_limited(record["image"], record["width"], record["height"], record["scan_limited_px"])
    failure = report.first_failure()
    if failure is not None:
        raise failure


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
                    "detector": face["detector"],
                    **{key: f"{face[key]:.{digits}f}" for key, digits in DIGITS.items()},
                    "quality": "ok" if face["ok"] else ", ".join(face["rejections"]),
                }
            )
    return rows
