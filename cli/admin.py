"""Store-wide commands: init, version, doctor."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer

from identity.errors import ExitCode
from identity.serialize import to_json
from identity_cli.context import open_app
from identity_cli.options import JSON
from identity_cli.output import err_console, render

if TYPE_CHECKING:
    from identity.services.maintenance.doctor import DoctorReport


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("version")(version)
    app.command("doctor")(doctor)


def init(
    rebind: bool = typer.Option(
        False,
        "--rebind",
        help="Bind the database to this process's vector store, "
        "whatever it was bound to (the vectors moved); then run `identity doctor --repair`.",
    ),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (recorded with --rebind)."),
    as_json: bool = JSON,
) -> None:
    """Create or upgrade the database schema and the active model's vector collection (safe to re-run)."""
    from identity.app.schema import UPGRADE
    from identity.services.maintenance.store_info import init_store

    with open_app(schema=UPGRADE) as core:  # the one command that upgrades an older store
        report = init_store(core, rebind, actor)
    render(dataclasses.asdict(report), as_json, title="identity init")
    if report.rebound_from and not as_json:
        err_console.print(
            f"rebound from {report.rebound_from}: run `identity doctor --repair` to re-enroll faces "
            "whose vectors this store lacks",
            highlight=False,
        )


def version(as_json: bool = JSON) -> None:
    """Print the versions of the package, the schema (database and code), the model pack in use and why, and
    what runs where (the detector's and the recognizer's device)."""
    from identity.app.schema import AS_IS
    from identity.services.maintenance.store_info import versions

    with open_app(read_only=True, schema=AS_IS) as core:  # a version check creates and changes nothing
        report = versions(core)
    render(to_json(report), as_json, title="identity version")


def doctor(
    fix: bool = typer.Option(
        False,
        "--repair",
        help="Fix what is found (re-enrolls faces whose vector is missing "
        "or damaged, rewrites person templates, rebuilds an unreadable vector shard).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="With --repair: delete orphan vectors even beyond the limit of max(1% of the vectors, 10).",
    ),
    deep: bool = typer.Option(False, "--deep", help="Read back every stored vector, not a sample of them."),
    as_json: bool = JSON,
) -> None:
    """Check that the database and the vector store agree; exit 1 when problems remain (or a repair is refused)."""
    from identity.services.maintenance.doctor import diagnose, repair
    from identity.services.maintenance.integrity import finish_rebuild, prepare_for_repair

    with open_app() as core:
        # --repair first sets aside a shard the engine cannot open or read: diagnose could not read it
        set_aside = prepare_for_repair(core) if fix else []
        report = diagnose(core, deep)
        if fix and report.repairable:
            repair(core, report, core.deployment().settings.worker_count, force)
            after = diagnose(core, deep)
            after.repaired = report.repaired
            report = after
        removed = fix and finish_rebuild(core, report.problems, report.repaired.get("faces_not_reenrolled", 0))
        report.integrity.rebuilt = set_aside
    for path in set_aside:
        kept = "removed" if removed else f"kept as {path}.damaged-*: some faces could not be enrolled again"
        err_console.print(
            f"rebuilt the unreadable vector shard {path} from the database and the photos (its damaged "
            f"files are {kept})",
            highlight=False,
            markup=False,
        )
    render(to_json(report), as_json, title="identity doctor: " + _verdict(report))
    if not as_json:
        for person in report.inconsistent_persons:
            err_console.print(
                f"inconsistent_person: {person.external_id}: only {person.agreeing_pairs_share:.0%} "
                f"of the pairs of its {person.faces} faces match; review its photos",
                highlight=False,
                markup=False,
            )
    if report.index_due:
        err_console.print(
            f"{report.unindexed_points} vectors are outside a search graph, so searches scan them one by one: run "
            "`identity doctor --repair` to build it",
            highlight=False,
        )
    for state, ids in report.stuck_jobs.items():
        shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        err_console.print(
            f"{len(ids)} jobs {state} far longer than their lease ({shown}): run `identity worker "
            f"--drain`, or `identity jobs cancel ID...` / `identity jobs retry`",
            highlight=False,
        )
    if report.problems:  # all repaired: exit 0, though `clean` is false (the report says what was repaired)
        raise typer.Exit(ExitCode.ERROR)


def _verdict(report: DoctorReport) -> str:
    if report.clean:
        return "clean"
    return "problems found" if report.problems else "repaired"
