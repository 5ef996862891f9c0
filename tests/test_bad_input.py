"""Bad input meets one-line errors: unusable image files among good ones, out-of-range
search settings, attribute filters that must read the same on SQLite and Postgres,
and database URLs that are wrong in the ways people get them wrong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from identity.store.sql.db import make_engine, session_factory, transaction
from identity.store.sql.migrate import upgrade
from identity.store.sql.persons import persons_with_attributes
from identity.store.sql.tables import Person
from identity_cli.main import main
from identity_cli.output import print_json

ROOT = os.geteuid() == 0  # root reads a chmod 000 file, so that case is only built for other users


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bad_files(tmp_path: Path, lfw_dir: Path) -> tuple[Path, dict[Path, str]]:
    """A photo with a face, and files that cannot be read as images, each with the reason expected."""
    good = tmp_path / "good.jpg"
    shutil.copy(sorted((lfw_dir / "Al_Gore").iterdir())[0], good)
    folder = tmp_path / "a-folder.jpg"
    folder.mkdir()
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it would block until a writer came: it must never be opened
    bad = {tmp_path / "missing.jpg": "no such file", folder: "not a regular file", fifo: "not a regular file"}
    if not ROOT:
        locked = tmp_path / "locked.jpg"
        shutil.copy(good, locked)
        locked.chmod(0)
        bad[locked] = "permission denied"
    return good, bad


def test_search_reports_each_bad_file_and_searches_the_rest(capsys, clean_env, bad_files) -> None:
    good, bad = bad_files
    assert run_cli(capsys, "init")[0] == 0
    code, out, err = run_cli(capsys, "search", str(good), *map(str, bad), "--json")
    assert code == 1, err
    shown = json.loads(out)
    assert [r["image"] for r in shown["results"]] == [str(good)]
    assert shown["results"][0]["faces"]
    errors = {e["image"]: e for e in shown["errors"]}
    assert set(errors) == {str(path) for path in bad}
    for path, reason in bad.items():
        assert errors[str(path)]["error"] == f"{path}: {reason}" and errors[str(path)]["exit_code"] == 1
    code, out, err = run_cli(capsys, "search", str(good), *map(str, bad))  # the table: one line per bad file
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {p}: {r}" for p, r in bad.items()
    ]


def test_faces_detect_reports_each_bad_file_and_detects_the_rest(capsys, clean_env, bad_files) -> None:
    good, bad = bad_files
    code, out, err = run_cli(capsys, "faces", "detect", str(good), *map(str, bad), "--json")
    assert code == 1
    reports = {r["image"]: r for r in json.loads(out)}
    assert len(reports[str(good)]["faces"]) == 1
    assert {path: reports[str(path)]["error"] for path in map(str, bad)} == {str(p): r for p, r in bad.items()}
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_file_the_parser_would_call_unreadable_is_still_processed(capsys, clean_env, bad_files, monkeypatch) -> None:
    # A command-line parser's readable check (os.access) turned one unreadable file into a usage
    # error (exit 2) for non-root users, and nothing else was processed: reading is left to the loader.
    good, _ = bad_files
    other = good.with_name("other.jpg")
    shutil.copy(good, other)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: os.fspath(path) != str(other) and real_access(path, mode, **kw)
    )
    code, out, err = run_cli(capsys, "faces", "detect", str(good), str(other), "--json")
    assert code == 0, err
    assert [len(r["faces"]) for r in json.loads(out)] == [1, 1]


@pytest.mark.parametrize(
    "flag, value, told",
    [
        ("--threshold", "4", "give -1 to 3"),
        ("--threshold", "-1.5", "give -1 to 3"),
        ("--threshold", "nan", "give -1 to 3"),
        ("--threshold", "inf", "give -1 to 3"),
        ("--min-score", "-inf", "from -1 to 1"),
        ("--min-score", "nan", "from -1 to 1"),
        ("--min-score", "1.5", "from -1 to 1"),
    ],
)
def test_out_of_range_scores_are_refused_and_nothing_is_logged(capsys, clean_env, tmp_path, flag, value, told) -> None:
    assert run_cli(capsys, "init")[0] == 0
    code, out, err = run_cli(capsys, "search", str(tmp_path / "any.jpg"), f"{flag}={value}", "--json")
    assert code == 1 and json.loads(out)["error_type"] == "InvalidArgument"  # the error is the JSON document
    assert len(err.strip().splitlines()) == 1 and told in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, "searches", "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_json_output_is_strict_json(capsys) -> None:
    print_json({"blur": float("nan"), "yaw": [float("inf"), -float("inf"), 1.5]})
    out = capsys.readouterr().out

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(out, parse_constant=refuse) == {"blur": None, "yaw": [None, None, 1.5]}


@pytest.fixture
def people(database_url: str):
    """A migrated store holding persons whose attributes use non-ASCII and awkward keys."""
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        s.add_all(
            [
                Person(external_id="anna", attributes={"отдел": "синий", "site": "Berlin", 'say "hi"': "yes"}),
                Person(external_id="ben", attributes={"отдел": "зелёный", "site": "Berlin"}),
                Person(external_id="chloé", attributes={"site": "München"}),
            ]
        )
        # A row as an earlier version wrote it: JSON with \u escapes, not the characters themselves.
        s.execute(
            text(
                "INSERT INTO persons (id, external_id, attributes, created_at, updated_at) "
                "VALUES (:id, 'dora', :attrs, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {
                "id": "00000000000000000000000000000d0a"
                if engine.dialect.name == "sqlite"
                else "00000000-0000-0000-0000-000000000d0a",
                "attrs": json.dumps({"отдел": "синий", "site": "Köln"}),
            },
        )
    yield sessions
    engine.dispose()


def test_attribute_filters_read_the_same_on_sqlite_and_postgres(people) -> None:
    def matching(filters: dict[str, list[str]]) -> list[str]:
        with people() as s:
            return sorted(s.get(Person, pid).external_id for pid in persons_with_attributes(s, filters))

    assert matching({"отдел": ["синий"]}) == ["anna", "dora"]  # non-ASCII key, old and new rows
    assert matching({"site": ["München"]}) == ["chloé"]
    assert matching({'say "hi"': ["yes"]}) == ["anna"]
    assert matching({"отдел": ["синий", "зелёный"]}) == ["anna", "ben", "dora"]  # a repeated key: any of its values
    assert matching({"отдел": ["синий"], "site": ["Berlin"]}) == ["anna"]  # different keys: all of them
    assert matching({"отдел": ["красный"]}) == [] and matching({"no such key": ["Berlin"]}) == []


def test_filter_options_group_a_repeated_key() -> None:
    from identity_cli.options import parse_filters

    assert parse_filters(["отдел=синий", "site=Berlin", "отдел=зелёный"]) == {
        "отдел": ["синий", "зелёный"],
        "site": "Berlin",
    }


def test_person_query_finds_non_ascii_attributes(capsys, clean_env) -> None:
    assert run_cli(capsys, "init")[0] == 0
    assert run_cli(capsys, "person", "add", "--external-id", "p1", "--attr", "город=Köln")[0] == 0
    code, out, _ = run_cli(capsys, "person", "list", "--query", "Köln", "--json")
    assert code == 0 and [p["external_id"] for p in json.loads(out)] == ["p1"]


def test_postgres_alias_url_works(capsys, clean_env, monkeypatch, postgres_url) -> None:
    alias = postgres_url.replace("postgresql+psycopg2://", "postgres://", 1)
    assert alias.startswith("postgres://")
    monkeypatch.setenv("IDENTITY_DATABASE_URL", alias)
    code, _, err = run_cli(capsys, "init")
    assert code == 0, err
    code, out, err = run_cli(capsys, "searches", "list", "--json")
    assert code == 0 and json.loads(out) == [], err


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql://u:secret@127.0.0.1:abc/db",
            "postgresql://u:****@127.0.0.1:abc/db: the port is not a number from 1 to 65535",
        ),
        ("postgresql://u@127.0.0.1:70000/db", "port 70000 is not a number from 1 to 65535"),
        ("postgresql://u@127.0.0.1:0/db", "port 0 is not a number from 1 to 65535"),
        ("sqlite:////no/such/dir/x.db", "folder /no/such/dir does not exist"),
        ("sqlite:///{tmp}/a-file/x.db", "{tmp}/a-file is not a folder"),
    ],
)
def test_bad_database_urls_are_one_line_and_create_nothing(
    capsys, clean_env, monkeypatch, tmp_path, url, message
) -> None:
    (tmp_path / "a-file").write_text("")
    url, message = url.format(tmp=tmp_path), message.format(tmp=tmp_path)
    existed = Path("/no").exists()
    monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
    for command in (["init"], ["searches", "list"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and message in err, err
        assert len(err.strip().splitlines()) == 1 and "secret" not in err and "Traceback" not in err
    assert Path("/no").exists() == existed


def test_sqlite_urls_relative_home_and_default(capsys, clean_env, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for url, where in (
        ("sqlite:///relative.db", tmp_path / "relative.db"),
        ("sqlite:///~/identity.db", tmp_path / "home" / "identity.db"),
    ):
        monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
        monkeypatch.setenv("IDENTITY_DATA_DIR", str(where.with_suffix(".data")))  # each database its own store
        code, _, err = run_cli(capsys, "init")
        assert code == 0 and where.is_file(), err
    monkeypatch.delenv("IDENTITY_DATABASE_URL")
    monkeypatch.setenv("IDENTITY_DATA_DIR", clean_env["IDENTITY_DATA_DIR"])
    code, _, err = run_cli(capsys, "init")  # the default data directory is made, as before
    assert code == 0 and (Path(clean_env["IDENTITY_DATA_DIR"]) / "identity.db").is_file(), err
