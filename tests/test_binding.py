"""One deployment, one vector store; a held store names its holder; read-only commands create nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from identity_cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_photo(lfw_dir: Path) -> str:
    return str(sorted((lfw_dir / "Al_Gore").iterdir())[0])


def audit_actions(url: str) -> list[tuple[str, dict]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("select action, details from audit_events order by id")).all()
    engine.dispose()
    return [(a, d if isinstance(d, dict) else json.loads(d)) for a, d in rows]


def test_second_data_dir_on_one_postgres_is_refused_until_rebind(
    capsys, clean_env, monkeypatch, postgres_url, tmp_path
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(first))
    code, out, err = run_cli(capsys, "init", "--json")
    assert code == 0, err
    assert json.loads(out)["vector_store"].startswith(f"edge:{first.resolve()}/vectors#")

    monkeypatch.setenv("IDENTITY_DATA_DIR", str(second))
    code, out, err = run_cli(capsys, "worker", "--drain", "--json")
    assert code == 4
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    error = json.loads(out)
    assert error["exit_code"] == 4 and error["error_type"] == "StoreMismatch"
    assert error["bound"].startswith(f"edge:{first.resolve()}/vectors#")
    for advice in (
        "bound to vector store",
        "IDENTITY_DATA_DIR",
        "Qdrant server",
        "identity init --rebind",
        "identity doctor --repair",
    ):
        assert advice in error["error"], advice
    assert not second.exists()  # refused before anything was created there

    code, out, err = run_cli(capsys, "init", "--rebind", "--actor", "ops", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["rebound_from"] == error["bound"]
    assert report["vector_store"].startswith(f"edge:{second.resolve()}/vectors#")
    assert ("rebind_vector_store", {"from": error["bound"], "to": report["vector_store"]}) in audit_actions(
        postgres_url
    )
    assert run_cli(capsys, "doctor", "--json")[0] == 0

    monkeypatch.setenv("IDENTITY_DATA_DIR", str(first))  # now the old one is the stranger
    code, _, err = run_cli(capsys, "doctor")
    assert code == 4 and f"bound to vector store edge:{second.resolve()}" in err


def test_a_moved_data_dir_keeps_its_binding_and_a_copy_is_refused(
    capsys, clean_env, monkeypatch, postgres_url, tmp_path
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "a"))
    assert run_cli(capsys, "init")[0] == 0
    shutil.move(tmp_path / "a", tmp_path / "moved")
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "moved"))
    code, out, err = run_cli(capsys, "init", "--json")
    assert code == 0, err
    assert json.loads(out)["vector_store"].startswith(f"edge:{(tmp_path / 'moved').resolve()}/vectors#")

    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "copy"))
    code, _, err = run_cli(capsys, "init")
    assert code == 4 and "exists twice" in err


def test_an_unbound_database_is_bound_by_the_first_command_that_writes_and_memory_mode_is_never_refused(
    capsys, clean_env, monkeypatch
) -> None:
    data = Path(clean_env["IDENTITY_DATA_DIR"])
    assert run_cli(capsys, "init")[0] == 0
    url = f"sqlite:///{data / 'identity.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # as a database used by a version before the binding looks
        conn.execute(text("update deployment set vector_store = null, bound_at = null"))
    bound = "select vector_store from deployment"
    assert run_cli(capsys, "doctor")[0] == 0  # a check reads: it binds nothing
    with engine.connect() as conn:
        assert conn.execute(text(bound)).scalar_one() is None
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    with engine.connect() as conn:
        bound = conn.execute(text(bound)).scalar_one()
    engine.dispose()
    assert bound == f"edge:{(data / 'vectors').resolve()}#{(data / 'vectors' / 'store_id').read_text().strip()}"

    monkeypatch.setenv("IDENTITY_QDRANT_URL", ":memory:")  # a store of one process (tests): binds nothing
    assert run_cli(capsys, "doctor")[0] == 0


def test_lock_held_by_a_worker_names_it_and_says_what_to_do(
    capsys, clean_env, monkeypatch, postgres_url, tmp_path
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    assert run_cli(capsys, "init")[0] == 0
    [lock] = list((Path(clean_env["IDENTITY_DATA_DIR"]) / "vectors").glob("faces_*/.lock"))
    exe = Path(sys.executable).with_name("identity")
    worker = subprocess.Popen(
        [str(exe), "worker", "--poll", "0.5"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline and f'"pid": {worker.pid}' not in lock.read_text():
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
        code, out, err = run_cli(capsys, "doctor", "--json")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert code == 4
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "held by `identity worker`" in err and f"pid {worker.pid}" in err
    assert "IDENTITY_QDRANT_URL" in err and "another data directory would split" in err
    error = json.loads(out)
    assert error["error_type"] == "StoreLocked" and error["exit_code"] == 4
    assert error["holder_pid"] == worker.pid and error["holder_command"] == "identity worker"
    assert error["holder_started"]


def test_a_running_worker_stops_writing_once_the_deployment_is_rebound(
    capsys, clean_env, monkeypatch, postgres_url, tmp_path
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    assert run_cli(capsys, "init")[0] == 0
    [lock] = list((Path(clean_env["IDENTITY_DATA_DIR"]) / "vectors").glob("faces_*/.lock"))
    exe = Path(sys.executable).with_name("identity")
    worker = subprocess.Popen(
        [str(exe), "worker", "--poll", "0.2"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline and f'"pid": {worker.pid}' not in lock.read_text():
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
        monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "moved"))
        assert run_cli(capsys, "init", "--rebind")[0] == 0
        _, err = worker.communicate(timeout=60)  # it notices between rounds and is refused on reopening
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 4
    assert f"bound to vector store edge:{(tmp_path / 'moved').resolve()}" in err


def test_lock_on_sqlite_says_wait_or_stop(capsys, clean_env) -> None:
    from identity import process
    from identity.config import Settings
    from identity.store.vectors import open_vector_index

    process.set_command("identity enroll")
    with open_vector_index(Settings.load(), "dlib-resnet@2", 128):  # held as an enrollment would hold it
        code, _, err = run_cli(capsys, "init")
    assert code == 4
    assert "held by `identity enroll`" in err and "wait for it to finish, or stop it" in err
    assert "Qdrant" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["search", "PHOTO"],
        ["search", "PHOTO", "--json"],
        ["person", "list"],
        ["person", "show", "x"],
        ["audit", "x"],
        ["searches", "list"],
        ["jobs", "list"],
        ["jobs", "cancel", "--state", "queued"],
    ],
)
def test_read_only_commands_on_an_empty_data_dir_create_nothing(capsys, clean_env, lfw_dir, args) -> None:
    data = Path(clean_env["IDENTITY_DATA_DIR"])
    args = [one_photo(lfw_dir) if a == "PHOTO" else a for a in args]
    code, out, err = run_cli(capsys, *args)
    assert code == 4
    assert f"no identity store at {data}: run `identity init`" in err
    assert len(err.strip().splitlines()) == 1
    if "--json" in args:
        assert json.loads(out)["error_type"] == "NoStore"
    assert not data.exists()


def test_version_on_an_empty_data_dir_says_so_and_creates_nothing(capsys, clean_env) -> None:
    code, out, _ = run_cli(capsys, "version", "--json")
    assert code == 0
    assert json.loads(out)["schema_database"].startswith("no identity store at")
    assert not Path(clean_env["IDENTITY_DATA_DIR"]).exists()


def test_read_only_command_on_an_uninitialised_postgres_creates_no_tables(
    capsys, clean_env, monkeypatch, postgres_url
) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", postgres_url)
    code, _, err = run_cli(capsys, "person", "list")
    assert code == 4 and "no identity store at postgresql" in err
    engine = create_engine(postgres_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_search_of_an_empty_gallery_warns(capsys, clean_env, lfw_dir) -> None:
    assert run_cli(capsys, "init")[0] == 0
    code, out, err = run_cli(capsys, "search", one_photo(lfw_dir), "--json")
    assert code == 0
    [result] = json.loads(out)["results"]
    assert any("gallery is empty" in w for w in result["warnings"])
    assert "warning:" in err and "gallery is empty" in err
