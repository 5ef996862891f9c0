"""Logic that lived only in the CLI, now called from Python as the HTTP API will: worker, reports, detection."""

from __future__ import annotations

from pathlib import Path

from identity.app.core import App
from identity.config import Settings
from identity.errors import ImageError, NoFaceFound
from identity.services.enrollment.report import REPORT_COLUMNS, report_rows, summary_record
from identity.services.queue.jobs import queue_enrollment
from identity.services.queue.worker import run_worker
from identity.services.search.detect import detect_faces
from identity.store.sql.jobs import JobSpec


def test_a_drained_worker_enrolls_the_queue_and_reports_each_job(tmp_path: Path, lfw_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    photos = sorted((lfw_dir / "Al_Gore").iterdir())[:2]
    with App.open(settings) as app:
        queue_enrollment(app, [JobSpec(str(p), "Al_Gore") for p in photos] + [JobSpec(str(tmp_path / "gone.jpg"), "X")])
    opened, seen = [], []
    with App.open(settings) as app:
        summary = run_worker(app, drain=True, poll=0.1, on_open=lambda: opened.append(1) or seen.append)
    assert opened == [1] and len(seen) == 3  # the callback came once the store opened, then took every result
    assert summary.counts == {"enrolled": 2, "failed": 1}
    rows = report_rows(summary, {}, [])
    assert all(len(row) == len(REPORT_COLUMNS) for row in rows)
    assert sorted(row[3] for row in rows) == ["enrolled", "enrolled", "failed"]
    assert summary_record(summary, []).processed == 3


def test_detection_reports_every_image_in_order_with_its_failure(tmp_path: Path, lfw_dir: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), "white").save(blank)
    photo = sorted((lfw_dir / "Al_Gore").iterdir())[0]
    with App.open(Settings(data_dir=tmp_path / "data")) as app:
        report = detect_faces(app, [blank, tmp_path / "missing.jpg", photo], crops=tmp_path / "crops")
    records = report.as_list()
    assert [Path(r["image"]).name for r in records] == ["blank.png", "missing.jpg", photo.name]
    assert isinstance(report.images[0].failure, NoFaceFound) and isinstance(report.images[1].failure, ImageError)
    assert isinstance(report.first_failure(), ImageError)  # an unreadable file is the more fundamental problem
    [face] = records[2]["faces"]
    assert face["ok"] and Path(face["crop"]).is_file()
