"""The vector store records its database: a wrong or empty database never takes (and wipes) a populated store.

Also: doctor --repair's deletion limit and its `clean`, first use by two processes at once,
and read-only commands that create no table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qmodels
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from identity.config import Settings
from identity.store.vectors import VectorPoint, open_vector_index
from identity.store.vectors.database_id import read_database_id, store_in_use, write_database_id
from identity_cli.main import main

MODEL = "dlib-resnet@2"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory (SQLite + Edge) holding two enrolled faces of one person, built once."""
    lfw = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(f"lfw-dev not found at {lfw}")
    root = tmp_path_factory.mktemp("populated")
    photos = root / "photos" / "Al_Gore"
    photos.mkdir(parents=True)
    for image in sorted((lfw / "Al_Gore").iterdir())[:2]:
        shutil.copy(image, photos / image.name)
    done = subprocess.run(
        [sys.executable, "-m", "identity_cli.main", "enroll", str(root / "photos")],
        env=cli_env(IDENTITY_DATA_DIR=str(root / "data"), IDENTITY_WORKERS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return root / "data"


@pytest.fixture
def data_dir(populated: Path, tmp_path: Path, clean_env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the populated data directory, this test's to change."""
    data = tmp_path / "data"
    shutil.copytree(populated, data)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(data))
    store_id = (data / "vectors" / "store_id").read_text().strip()
    engine = create_engine(f"sqlite:///{data / 'identity.db'}")
    with engine.begin() as conn:  # the copy is this test's deployment (else: "exists twice", rightly)
        conn.execute(
            text("update deployment set vector_store = :uri"),
            {"uri": f"edge:{(data / 'vectors').resolve()}#{store_id}"},
        )
    engine.dispose()
    return data


def vector_count(data: Path) -> int:
    with open_vector_index(Settings(data_dir=data), MODEL, 128) as index:
        return index.count()


def table_names(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        names = (
            conn.execute(text("select table_name from information_schema.tables where table_schema = 'public'"))
            .scalars()
            .all()
        )
    engine.dispose()
    return names


def test_an_empty_sqlite_database_with_a_populated_data_dir_is_refused_and_the_vectors_stay(
    capsys, data_dir, monkeypatch, tmp_path
) -> None:
    (tmp_path / "empty").mkdir()
    before = vector_count(data_dir)
    monkeypatch.setenv("IDENTITY_DATABASE_URL", f"sqlite:///{tmp_path / 'empty' / 'empty.db'}")
    code, out, err = run_cli(capsys, "doctor", "--repair", "--json")
    assert code == 4
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    error = json.loads(out)
    assert error["error_type"] == "StoreMismatch" and error["exit_code"] == 4
    assert "is empty" in error["error"] and "IDENTITY_DATABASE_URL" in error["error"]
    assert error["store_database_id"] == (data_dir / "vectors" / "database_id").read_text().strip()
    assert list((tmp_path / "empty").iterdir()) == []  # refused before the SQLite file was created

    monkeypatch.delenv("IDENTITY_DATABASE_URL")
    assert vector_count(data_dir) == before == 2
    code, out, _ = run_cli(capsys, "doctor", "--json")
    assert code == 0 and json.loads(out)["clean"]


def test_an_empty_postgres_database_with_a_populated_data_dir_is_refused_and_creates_no_table(
    capsys, data_dir, monkeypatch, postgres_url
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    for args in (["doctor", "--repair"], ["init"], ["person", "add", "--external-id", "x"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 4 and "holds the vectors of database" in err, args
    assert table_names(postgres_url) == []
    assert vector_count(data_dir) == 2


def test_a_database_with_a_schema_but_no_deployment_is_refused_before_it_binds(
    capsys, data_dir, monkeypatch, postgres_url
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(data_dir.parent / "other"))
    assert run_cli(capsys, "init")[0] == 0  # another deployment: its own data dir
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # as a schema some command created without binding looks
        conn.execute(text("delete from deployment"))
    engine.dispose()
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(data_dir))
    recorded = (data_dir / "vectors" / "database_id").read_text()
    code, _, err = run_cli(capsys, "doctor", "--repair")
    assert code == 4 and "is empty" in err
    assert (data_dir / "vectors" / "database_id").read_text() == recorded
    assert vector_count(data_dir) == 2


def test_another_databases_store_is_refused_even_when_the_binding_was_cleared(
    capsys, data_dir, monkeypatch, tmp_path
) -> None:
    other = tmp_path / "other"
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(other))
    assert run_cli(capsys, "init")[0] == 0
    monkeypatch.setenv("IDENTITY_DATABASE_URL", f"sqlite:///{other / 'identity.db'}")
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(data_dir))
    code, _, err = run_cli(capsys, "doctor", "--repair")
    assert code == 4 and "is another one" in err
    engine = create_engine(f"sqlite:///{other / 'identity.db'}")
    with engine.begin() as conn:
        conn.execute(text("update deployment set vector_store = null, bound_at = null"))
    engine.dispose()
    code, _, err = run_cli(capsys, "doctor", "--repair")
    assert code == 4 and "is another one" in err  # the store's side alone
    assert vector_count(data_dir) == 2


def test_a_store_from_before_gets_the_database_id_and_is_then_guarded(capsys, data_dir, monkeypatch, tmp_path) -> None:
    id_file = data_dir / "vectors" / "database_id"
    expected = id_file.read_text()
    id_file.unlink()  # as a store written by the version before looks
    assert run_cli(capsys, "doctor")[0] == 0 and not id_file.exists()  # a check reads: it writes no id
    assert run_cli(capsys, "doctor", "--repair")[0] == 0  # bound to this store: the store learns its id
    assert id_file.read_text() == expected
    id_file.unlink()
    assert run_cli(capsys, "init")[0] == 0
    assert id_file.read_text() == expected

    id_file.unlink()  # a store from before, an empty database: its store id alone says it is in use
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("IDENTITY_DATABASE_URL", f"sqlite:///{tmp_path / 'empty' / 'e.db'}")
    code, _, err = run_cli(capsys, "doctor", "--repair")
    assert code == 4 and "holds the vectors of another database" in err
    assert not id_file.exists()


def test_a_server_store_records_its_database_in_collection_metadata(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", qdrant_url="http://127.0.0.1:1")  # the client below serves
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        assert read_database_id(settings, client) is None and not store_in_use(settings, client)
        client.create_collection(
            "faces_x", vectors_config=qmodels.VectorParams(size=2, distance=qmodels.Distance.COSINE)
        )
        assert not store_in_use(settings, client)  # an empty collection holds nobody's vectors
        client.upsert("faces_x", [qmodels.PointStruct(id=str(uuid.uuid4()), vector=[1.0, 0.0])])
        assert store_in_use(settings, client)
        write_database_id(settings, "abc123", client)
        write_database_id(settings, "def456", client)  # replaced, not duplicated
        assert read_database_id(settings, client) == "def456"
    finally:
        client.close()
    reopened = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        assert read_database_id(settings, reopened) == "def456"
    finally:
        reopened.close()


def add_orphans(data: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    with open_vector_index(Settings(data_dir=data), MODEL, 128) as index:
        index.upsert(
            [VectorPoint(uuid.uuid4(), uuid.uuid4(), rng.normal(size=128).astype(np.float32)) for _ in range(count)]
        )


def test_doctor_repair_deletes_no_more_than_its_limit_without_force(capsys, data_dir) -> None:
    add_orphans(data_dir, 11)
    code, out, err = run_cli(capsys, "doctor", "--repair", "--json")
    assert code == 1
    error = json.loads(out)
    assert error["error_type"] == "RepairRefused" and error["vectors_to_delete"] == 11 and error["limit"] == 10
    assert "would delete 11 of" in err and "--force" in err
    assert vector_count(data_dir) == 13  # nothing deleted

    code, out, _ = run_cli(capsys, "doctor", "--repair", "--force", "--json")
    report = json.loads(out)
    assert code == 0 and report["clean"] is False and report["repaired"]["orphan_vectors_deleted"] == 11
    assert vector_count(data_dir) == 2
    code, out, _ = run_cli(capsys, "doctor", "--json")
    assert code == 0 and json.loads(out)["clean"] is True


def test_doctor_repair_within_the_limit_repairs_and_says_it_was_not_clean(capsys, data_dir) -> None:
    add_orphans(data_dir, 3)
    code, out, _ = run_cli(capsys, "doctor", "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["clean"] is False and report["repaired"] == {"orphan_vectors_deleted": 3}
    assert run_cli(capsys, "doctor")[0] == 0


# (what to import before the start, what to run after it)
CLI = ("from identity_cli.main import main", "sys.exit(main(sys.argv[1:]))")
BIND = (
    "from identity.app.binding import bind_vector_store\nfrom identity.app.core import App\n"
    "from identity.config import Settings",
    "with App.open(Settings.load()) as app:\n    print(bind_vector_store(app).uri)",
)


def start_together(
    runs: list[tuple[tuple[str, str], list[str]]], env: dict[str, str]
) -> list[subprocess.CompletedProcess]:
    """Start every ((imports, body), arguments) process at once: each imports, says it is ready, and waits
    for a shared start file; then all are waited for."""
    root = Path(env["IDENTITY_DATA_DIR"]).parent
    gate = root / "go"
    procs = []
    for n, ((imports, body), args) in enumerate(runs):
        script = (
            f"import os, sys, time\n{imports}\nopen({str(root / f'ready{n}')!r}, 'w').close()\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.002)\n{body}\n"
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.time() + 60
    while not all((root / f"ready{n}").exists() for n in range(len(runs))) and time.time() < deadline:
        time.sleep(0.01)
    gate.touch()
    results = []
    for (_, args), proc in zip(runs, procs):
        out, err = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def first_use_env(request: pytest.FixtureRequest, backend: str, root: Path) -> dict[str, str]:
    env = cli_env(IDENTITY_DATA_DIR=str(root / "data"))
    if backend == "postgres":
        env["IDENTITY_DATABASE_URL"] = _fresh_postgres(request)
    return env


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_first_commands_at_once_both_succeed(request, backend, tmp_path) -> None:
    """Both create the schema; `init` also binds (two commands that open the embedded store at once are refused
    by its one-process lock, by design: `person add` does not open it)."""
    for round_ in range(2):
        root = tmp_path / f"round{round_}"
        root.mkdir()
        runs = [(CLI, ["init", "--json"]), (CLI, ["person", "add", "--external-id", f"p{round_}", "--json"])]
        for result in start_together(runs, first_use_env(request, backend, root)):
            assert result.returncode == 0, (round_, result.args, result.stderr)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_binding_a_fresh_deployment_at_once_agree_on_one_store(request, backend, tmp_path) -> None:
    for round_ in range(3):
        root = tmp_path / f"round{round_}"
        root.mkdir()
        results = start_together([(BIND, []), (BIND, [])], first_use_env(request, backend, root))
        for result in results:
            assert result.returncode == 0, (round_, result.stderr)
        assert results[0].stdout == results[1].stdout
        assert results[0].stdout.startswith(f"edge:{(root / 'data' / 'vectors').resolve()}#")


def _fresh_postgres(request: pytest.FixtureRequest) -> str:
    """A new throwaway database per call (the fixture gives one per test; a round needs its own)."""
    admin_url = request.getfixturevalue("postgres_admin")
    name = f"identity_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    "args",
    [
        ["config", "show"],
        ["config", "show", "--json"],
        ["version"],
        ["search", "PHOTO"],
        ["audit", "x"],
        ["person", "list"],
        ["person", "show", "x"],
        ["searches", "list"],
        ["models", "list"],
        ["models", "list", "--json"],
    ],
)
def test_read_only_commands_on_an_empty_postgres_create_no_table(
    capsys, clean_env, lfw_dir, monkeypatch, postgres_url, args
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    photo = str(sorted((lfw_dir / "Al_Gore").iterdir())[0])
    code, _, err = run_cli(capsys, *[photo if a == "PHOTO" else a for a in args])
    assert code in (0, 4), err
    assert table_names(postgres_url) == []


OPEN = ("from identity.store.sql.db import check_connection, make_engine", "check_connection(make_engine(sys.argv[1]))")


def test_two_processes_opening_a_fresh_sqlite_file_at_once_both_connect(tmp_path) -> None:
    """The switch to WAL needs the file to itself and SQLite refuses it at once ("database is locked", no
    busy wait) while the other process holds it: 3 of 30 pairs failed before the switch was retried."""
    for round_ in range(8):
        url = f"sqlite:///{tmp_path / f'fresh{round_}.db'}"
        root = tmp_path / f"open{round_}"
        root.mkdir()
        for result in start_together([(OPEN, [url]), (OPEN, [url])], cli_env(IDENTITY_DATA_DIR=str(root / "data"))):
            assert result.returncode == 0, (round_, result.stderr)
