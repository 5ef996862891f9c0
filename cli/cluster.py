"""`identity cluster ...`: group unlabelled faces into people, correct the groups, and name them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from identity.errors import ExitCode, InvalidArgument
from identity.pathnames import shown
from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import ACTOR, JSON
from identity_cli.output import console, err_console, print_json, print_table, render


class _RunByDefault(TyperGroup):
    """`identity cluster DIR` and `identity cluster --from-searches` mean `identity cluster run ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Group unlabelled faces (a folder, or faces searches returned as unknown) into people to enroll.",
)
CLUSTER = typer.Argument(..., help="Cluster id (identity cluster list).")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cluster")


@app.command("run")
def run(
    folder: Path | None = typer.Argument(None, help="Folder of unlabelled photos (any depth)."),
    from_searches: bool = typer.Option(
        False,
        "--from-searches",
        help="Cluster the faces searches returned as unknown (kept only with settings review.keep_unknown_faces).",
    ),
    since: datetime | None = typer.Option(
        None, "--since", help="With --from-searches: faces kept at or after this time (UTC)."
    ),
    html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML page of thumbnails."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes for detection (0: one per core)."),
    as_json: bool = JSON,
) -> None:
    """Cluster faces by identity and store the clusters (biggest first; faces alone listed apart)."""
    from identity.services.clustering.clusters import cluster_folder, cluster_searches

    if (folder is None) == (not from_searches):
        raise InvalidArgument("give a folder of photos, or --from-searches (one of them)")
    if since is not None and not from_searches:
        raise InvalidArgument("--since goes with --from-searches")
    with open_app(deployment=True) as core:
        if from_searches:
            result = cluster_searches(core, since)
        else:
            result = _with_progress(lambda advance, total: cluster_folder(core, folder, workers, advance, total))
        if html:
            from identity.render.cluster_html import render_clusters_html

            html.write_text(
                render_clusters_html(core, f"clusters of {result.scope}", result.clusters, result.singletons),
                encoding="utf-8",
            )
    for error in result.errors:
        err_console.print(f"[red]error:[/red] {escape(shown(error.error))}", highlight=False)
    for copy in result.duplicates:
        err_console.print(
            shown(f"duplicate: {copy.path}: same file as {copy.duplicate_of} (clustered once)"),
            highlight=False,
            markup=False,
        )
    if as_json:
        print_json(result)
    else:
        _show_run(result)
        if html:
            err_console.print(f"wrote {html}")
    if result.errors:
        raise typer.Exit(ExitCode.ERROR)


def _with_progress(work: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]detecting faces"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("detect", total=None)
        return work(lambda n: progress.advance(task, n), lambda total: progress.update(task, total=total))


def _show_run(result: Any) -> None:
    rows = [
        {
            "cluster_id": c.cluster_id,
            "faces": c.size,
            "status": c.status,
            "photos": ", ".join(Path(f.source_path or f.image_sha256[:12]).name for f in c.faces[:4])
            + (" ..." if c.size > 4 else ""),
        }
        for c in result.clusters
    ]
    print_table(
        rows,
        ["cluster_id", "faces", "status", "photos"],
        title=f"{len(result.clusters)} clusters of {result.faces} faces in {result.photos} photos",
    )
    console.print(
        f"{len(result.singletons)} faces alone (identity cluster list --min-size 1 lists them); "
        f"{result.left_alone} faces of clusters already named, discarded or edited left as they were; "
        f"method {result.method}, clustering {result.seconds:.2f} s",
        highlight=False,
    )


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="open, edited, named or discarded."),
    min_size: int = typer.Option(2, "--min-size", min=1, help="Only clusters of at least this many faces."),
    as_json: bool = JSON,
) -> None:
    """Stored clusters, biggest first."""
    from identity.services.clustering.clusters import list_clusters

    with open_app(read_only=True) as core:
        views = list_clusters(core, status, min_size=min_size)
    if as_json:
        print_json(views)
        return
    print_table(
        [{**to_json(v), "faces": v.size} for v in views],
        ["cluster_id", "faces", "status", "person", "scope"],
        title=f"{len(views)} clusters",
    )


@app.command("show")
def show(cluster: str = CLUSTER, as_json: bool = JSON) -> None:
    """A cluster's faces and their photos."""
    from identity.services.clustering.clusters import show_cluster

    with open_app(read_only=True) as core:
        view = show_cluster(core, cluster)
    if as_json:
        print_json(view)
        return
    print_table(
        [to_json(f) for f in view.faces],
        ["face_key", "source_path", "face_index", "bbox"],
        title=f"cluster {view.cluster_id}: {view.size} faces, {view.status}"
        + (f", named {view.person}" if view.person else ""),
    )


@app.command("name")
def name(
    cluster: str = CLUSTER,
    person: str | None = typer.Option(None, "--person", help="An existing person (external id or uuid)."),
    new: str | None = typer.Option(None, "--new", help="A new person's external id."),
    display_name: str | None = typer.Option(None, "--name", help="With --new: the display name."),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Enroll the cluster's faces for a person, through the normal enrollment (same states, same idempotence)."""
    from identity.services.clustering.clusters import name_cluster

    with open_app(deployment=True) as core:
        named = name_cluster(core, cluster, person, new, display_name, actor)
    if as_json:
        print_json(named)
    else:
        print_table(
            named.faces,
            ["face_key", "state", "reason", "source"],
            title=f"cluster {named.cluster_id} -> {named.person}: {named.states}",
        )
    if not any(state in ("enrolled", "duplicate") for state in named.states):
        raise typer.Exit(ExitCode.ERROR)


@app.command("split")
def split(
    cluster: str = CLUSTER,
    faces: list[str] = typer.Argument(..., help="Face keys to move into a new cluster (identity cluster show)."),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Move some faces of a cluster into a new one."""
    from identity.services.clustering.clusters import split_cluster

    with open_app() as core:
        views = split_cluster(core, cluster, faces, actor)
    render(views, as_json, ["cluster_id", "size", "status"], title="after the split")


@app.command("merge")
def merge(
    clusters: list[str] = typer.Argument(..., help="Two cluster ids or more; the others fold into the first."),
    actor: str | None = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Merge clusters that are one person."""
    from identity.services.clustering.clusters import merge_clusters

    with open_app() as core:
        view = merge_clusters(core, clusters, actor)
    render([view], as_json, ["cluster_id", "size", "status"], title="after the merge")


@app.command("discard")
def discard(cluster: str = CLUSTER, actor: str | None = ACTOR, as_json: bool = JSON) -> None:
    """Not a person to enroll: kept as discarded, its kept unknown faces erased now."""
    from identity.services.clustering.clusters import discard_cluster

    with open_app(deployment=True) as core:
        done = discard_cluster(core, cluster, actor)
    render(done, as_json, title=f"cluster {cluster} discarded")
