"""The `identity` command: sub-apps per noun, errors mapped to exit codes in one place.

Heavy libraries are imported inside commands so `identity --help` stays instant.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.markup import escape

from identity import process
from identity.errors import ExitCode, IdentityError
from identity.pathnames import shown
from identity.services.private_files import private_umask
from identity_cli import context, output
from identity_cli.output import err_console, print_json

app = typer.Typer(
    name="identity",
    help="Face identity search: enroll people from photos, ask who is in a photo, audit what is held.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    config: Path | None = typer.Option(None, "--config", help="TOML config file (else IDENTITY_CONFIG)."),
) -> None:
    context.state.debug = debug
    context.state.config_file = config
    context.state.settings = None


def _register() -> None:
    # Sub-apps are imported here, not at the top, so each module's imports stay light.
    from identity_cli import (
        admin,
        cluster,
        config_cmd,
        enrollment,
        evaluation,
        faces,
        jobs,
        keys,
        models,
        person,
        reindex,
        review,
        search,
        serve,
        train,
        verify,
        webhooks,
    )
    from identity_cli import face_edit as face

    admin.register(app)
    enrollment.register(app)
    search.register(app)
    verify.register(app)
    review.register(app)
    cluster.register(app)
    evaluation.register(app)
    reindex.register(app)
    train.register(app)
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(person.app, name="person")
    app.add_typer(face.app, name="face")
    app.add_typer(jobs.app, name="jobs")
    app.add_typer(faces.app, name="faces")
    app.add_typer(models.app, name="models")
    app.add_typer(keys.app, name="keys")
    app.add_typer(webhooks.app, name="webhooks")
    serve.register(app)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; IdentityError becomes one clean line (and JSON under --json)."""
    args = list(sys.argv[1:] if argv is None else argv)
    words, rest = _command_words(args)
    process.set_command(" ".join(["identity", *words]))  # lock files name their holder by it
    output.written.json = False
    try:
        # Standalone mode: Typer itself reports usage errors (exit 2) and raises SystemExit.
        app(args=args, prog_name="identity")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (ExitCode.OK if exc.code is None else ExitCode.ERROR)
    except IdentityError as exc:
        if context.state.debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(shown(exc.message))}", highlight=False)
        if "--json" in rest and not output.written.json:  # scripts read the error where they read results;
            # a command that printed its results already (with per-file errors in them) prints no second document
            print_json(exc.as_dict())
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if context.state.debug:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0]
        err_console.print(
            f"[red]error:[/red] {type(exc).__name__}: {escape(shown(first_line))} (run with --debug for details)",
            highlight=False,
        )
        return ExitCode.ERROR
    return ExitCode.OK


def _command_words(args: list[str]) -> tuple[list[str], list[str]]:
    """The command path in `args` (e.g. ["person", "list"]) and the arguments after it."""
    from typer.main import get_command

    commands = get_command(app).commands  # type: ignore[attr-defined]
    words: list[str] = []
    i = 0
    while i < len(args) and commands:
        if args[i].startswith("-"):
            i += 2 if args[i] == "--config" else 1  # the root's options: only --config takes a value
            continue
        sub = commands.get(args[i])
        if sub is None:
            break
        words.append(args[i])
        commands, i = getattr(sub, "commands", None), i + 1  # a group's sub-commands; None for a command
    return words, args[i:]


def run() -> None:
    private_umask()  # every file the command writes (database, shards, uploads) is its owner's only
    sys.exit(main())


if __name__ == "__main__":
    run()
