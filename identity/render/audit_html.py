"""One self-contained HTML page for an audit: thumbnails cut from the source images, inline.

Nothing is fetched when the page opens (images are base64 data URIs), so it can be
archived or mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import uuid
from collections.abc import Iterable

from PIL import Image as PILImage

from identity.app.core import App
from identity.errors import ImageError
from identity.faces import load_image
from identity.pathnames import fs_path
from identity.serialize import to_json
from identity.services.records.audit import AuditReport, face_sources

THUMB_PX = 128
MARGIN = 0.25  # context around the face box, as a share of its size


def thumbnail_data_uri(source_path: str, bbox: list[float]) -> str | None:
    """A JPEG data URI of the face box (with some margin), or None when the source is gone."""
    try:
        image = load_image(fs_path(source_path))
    except ImageError:
        return None
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(image.width, int(x2 + mx)), min(image.height, int(y2 + my)))
    crop = PILImage.fromarray(image.rgb).crop(box)
    crop.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def face_thumbnails(app: App, face_ids: Iterable[str]) -> dict[str, str]:
    """Data URIs of the given faces (ids as strings), for pages; faces whose source is gone are left out."""
    boxes = face_sources(app, list({uuid.UUID(f) for f in face_ids}))
    found = {str(face_id): thumbnail_data_uri(path, bbox) for face_id, (path, bbox) in boxes.items()}
    return {face_id: uri for face_id, uri in found.items() if uri}


def _review_text(search: dict) -> str:
    return "not reviewed" if search["reviewed_by"] is None else f"{search['review']} by {search['reviewed_by']}"


def render_audit_html(audit: AuditReport) -> str:
    report = to_json(audit)  # the page shows what `identity audit --json` prints
    person = report["person"]
    e = html.escape
    cards = []
    for face in report["faces"]:
        uri = thumbnail_data_uri(face["source_path"], face["bbox"])
        picture = (
            f'<img src="{uri}" alt="face {e(face["face_id"])}">'
            if uri
            else '<div class="missing">source image missing</div>'
        )
        flags = []
        if face.get("outlier"):
            flags.append('<span class="warn">outlier: possibly mislabelled</span>')
        if face["status"] != "indexed":
            flags.append(f'<span class="warn">{e(face["status"])} {e(face.get("rejection") or "")}</span>')
        sim = face.get("similarity_to_own_template")
        cards.append(
            f'<figure class="face">{picture}<figcaption>{e(face["source_path"].rsplit("/", 1)[-1])}<br>'
            f"score {face['det_score']:.2f} · iod {face['iod_px'] or 0:.0f}px · blur {face['blur'] or 0:.0f}"
            f"{f'<br>similarity to own template {sim:.3f}' if sim is not None else ''}"
            f"<br>{' '.join(flags)}</figcaption></figure>"
        )
    searches = (
        "".join(
            f"<tr><td>{e(s['when'])}</td><td>{e(s['actor'])}</td><td>{s['rank']}</td><td>{s['score']:.3f}</td>"
            f"<td>{e(s['decision'])}</td><td>{e(_review_text(s))}</td>"
            f"<td><code>{e((s['query_sha256'] or 'redacted')[:16])}…</code></td></tr>"
            for s in report["searches"]
        )
        or '<tr><td colspan="7">no search has returned this person</td></tr>'
    )
    lookalikes = (
        "".join(
            f"<tr><td>{e(other['person']['external_id'])}</td><td>{e(other['person']['display_name'] or '')}</td>"
            f"<td>{other['score']:.3f}</td></tr>"
            for other in report["lookalikes"]
        )
        or '<tr><td colspan="3">none</td></tr>'
    )
    attrs = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in person["attributes"].items()) or "<li>none</li>"
    margin = report["lookalike_margin"]
    margin_text = "n/a" if margin is None else f"{margin:+.3f}" + (" (a look-alike would match!)" if margin < 0 else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Audit: {e(person["external_id"])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}} h1{{margin-bottom:0}}
.faces{{display:flex;flex-wrap:wrap;gap:1rem}} .face{{margin:0;width:180px;font-size:.8rem}}
.face img{{width:128px;height:auto;border-radius:4px;border:1px solid #ccc}}
.warn{{color:#b00;font-weight:600}} .missing{{width:128px;height:128px;background:#eee;display:flex;align-items:center;justify-content:center}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}}
</style></head><body>
<h1>{e(person["display_name"] or person["external_id"])}</h1>
<p>external id <b>{e(person["external_id"])}</b> · uuid <code>{e(person["id"])}</code> · created {e(person["created_at"] or "")}</p>
<h2>Attributes</h2><ul>{attrs}</ul>
<h2>Enrolled faces ({len(report["faces"])})</h2><div class="faces">{"".join(cards)}</div>
<h2>Searches that returned this person ({len(report["searches"])})</h2>
<table><tr><th>when</th><th>actor</th><th>rank</th><th>score</th><th>decision</th><th>review</th><th>query image sha256</th></tr>{searches}</table>
<h2>Look-alike risk</h2><p>decision threshold {report["threshold"]:.3f} ({e(report["decision_rule"])} rule); margin of this person's template searched among everyone else: {margin_text}</p>
<table><tr><th>external id</th><th>name</th><th>template similarity</th></tr>{lookalikes}</table>
</body></html>
"""
