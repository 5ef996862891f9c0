"""One self-contained HTML page for an audit: the stored face thumbnails, inline.

Nothing is fetched when the page opens (images are base64 data URIs), so it can be
archived or mailed as one file. Faces are drawn from their stored thumbnails
(identity.services.records.thumbnails), never cut from the source photos.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from identity.app.core import App
from identity.serialize import to_json
from identity.services.records import thumbnails
from identity.services.records.audit import AuditReport

NO_THUMBNAIL = '<div class="missing">no thumbnail</div>'  # a face without a stored thumbnail


def face_thumbnails(app: App, face_ids: Iterable[str]) -> dict[str, str]:
    """Data URIs of the given faces' stored thumbnails (ids as strings); faces without one are left out."""
    return {face_id: thumbnails.data_uri(jpeg) for face_id, jpeg in thumbnails.face_thumbnails(app, face_ids).items()}


def search_thumbnails(app: App, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Data URIs of searched faces' kept thumbnails by (search id, face index); those not kept are left out."""
    return {key: thumbnails.data_uri(jpeg) for key, jpeg in thumbnails.search_thumbnails(app, keys).items()}


def _searched_face(uri: str | None) -> str:
    """The searched face's kept thumbnail, or a word on why there is none (not kept, expired or erased)."""
    return f'<img class="searched" src="{uri}" alt="searched face">' if uri else "not kept"


def _review_text(search: dict) -> str:
    return "not reviewed" if search["reviewed_by"] is None else f"{search['review']} by {search['reviewed_by']}"


def render_audit_html(app: App, audit: AuditReport) -> str:
    report = to_json(audit)  # the page shows what `identity audit --json` prints
    person = report["person"]
    e = html.escape
    faces = face_thumbnails(app, [face["face_id"] for face in report["faces"]])
    searched = search_thumbnails(app, [(s["search_id"], s["face_index"]) for s in report["searches"]])
    cards = []
    for face in report["faces"]:
        uri = faces.get(face["face_id"])
        picture = f'<img src="{uri}" alt="face {e(face["face_id"])}">' if uri else NO_THUMBNAIL
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
            f"<tr><td>{_searched_face(searched.get((s['search_id'], s['face_index'])))}</td>"
            f"<td>{e(s['when'])}</td><td>{e(s['actor'])}</td><td>{s['rank']}</td><td>{s['score']:.3f}</td>"
            f"<td>{e(s['decision'])}</td><td>{e(_review_text(s))}</td>"
            f"<td><code>{e((s['query_sha256'] or 'redacted')[:16])}…</code></td></tr>"
            for s in report["searches"]
        )
        or '<tr><td colspan="8">no search has returned this person</td></tr>'
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
.face img{{width:128px;height:auto;border-radius:4px;border:1px solid #ccc}} img.searched{{width:64px;height:auto;border-radius:4px}}
.warn{{color:#b00;font-weight:600}} .missing{{width:128px;height:128px;background:#eee;display:flex;align-items:center;justify-content:center}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}}
</style></head><body>
<h1>{e(person["display_name"] or person["external_id"])}</h1>
<p>external id <b>{e(person["external_id"])}</b> · uuid <code>{e(person["id"])}</code> · created {e(person["created_at"] or "")}</p>
<h2>Attributes</h2><ul>{attrs}</ul>
<h2>Enrolled faces ({len(report["faces"])})</h2><div class="faces">{"".join(cards)}</div>
<h2>Searches that returned this person ({len(report["searches"])})</h2>
<table><tr><th>searched face</th><th>when</th><th>actor</th><th>rank</th><th>score</th><th>decision</th><th>review</th><th>query image sha256</th></tr>{searches}</table>
<h2>Look-alike risk</h2><p>decision threshold {report["threshold"]:.3f} ({e(report["decision_rule"])} rule); margin of this person's template searched among everyone else: {margin_text}</p>
<table><tr><th>external id</th><th>name</th><th>template similarity</th></tr>{lookalikes}</table>
</body></html>
"""
