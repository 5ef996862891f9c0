"""One self-contained HTML page of clusters: each cluster's faces as inline thumbnails, biggest first."""

from __future__ import annotations

import html
from collections.abc import Sequence

from identity.app.core import App
from identity.services.clustering.clusters import ClusterFace, ClusterView, member_thumbnails
from identity.services.records.thumbnails import data_uri


def cluster_thumbnails(app: App, clusters: Sequence[ClusterView], per_cluster: int | None = None) -> dict[str, str]:
    """Data URIs of the clusters' stored face thumbnails (the first `per_cluster` of each) by face key;
    faces without one are left out (never cut from the photo)."""
    return {key: data_uri(jpeg) for key, jpeg in member_thumbnails(app, clusters, per_cluster).items()}


def render_clusters_html(
    app: App, title: str, clusters: Sequence[ClusterView], singletons: Sequence[ClusterView]
) -> str:
    e = html.escape
    thumbs = cluster_thumbnails(app, [*clusters, *singletons])

    def card(face: ClusterFace) -> str:
        uri = thumbs.get(face.face_key)
        picture = f'<img src="{uri}" alt="">' if uri else '<div class="missing">no thumbnail</div>'
        name = (face.source_path or face.image_sha256[:12]).rsplit("/", 1)[-1]
        return f"<figure>{picture}<figcaption>{e(name)}<br><code>{e(face.face_key[:24])}</code></figcaption></figure>"

    def section(cluster: ClusterView) -> str:
        named = f" · named {e(cluster.person)}" if cluster.person else ""
        return (
            f"<section><h2>{e(cluster.cluster_id)} · {cluster.size} faces · {e(cluster.status)}{named}</h2>"
            f'<div class="faces">{"".join(card(f) for f in cluster.faces)}</div></section>'
        )

    alone = "".join(card(f) for c in singletons for f in c.faces)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}} section{{margin-bottom:1.5rem}}
h2{{font-size:1rem;margin:.3rem 0}} .faces{{display:flex;flex-wrap:wrap;gap:.6rem}}
figure{{margin:0;width:110px;font-size:.7rem;overflow-wrap:anywhere}} img{{width:100px;border-radius:4px;border:1px solid #ccc}}
.missing{{width:100px;height:100px;background:#eee;display:flex;align-items:center;justify-content:center}}
</style></head><body>
<h1>{e(title)}</h1>
<p>{len(clusters)} clusters of two faces or more, biggest first; {len(singletons)} faces alone.
Name one with <code>identity cluster name CLUSTER_ID --new EXTERNAL_ID</code>.</p>
{"".join(section(c) for c in clusters)}
<h2>Faces alone ({len(singletons)})</h2><div class="faces">{alone}</div>
</body></html>
"""
