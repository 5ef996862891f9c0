"""The CLI as a user meets it: help, configuration, clean errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from identity_cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_command_groups(capsys, clean_env) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for group in ("config", "init", "version", "faces", "models"):
        assert group in out


def test_every_command_has_help_text() -> None:
    from typer.main import get_command

    from identity_cli.main import app

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    missing = [path for path, cmd in walk(get_command(app), "identity") if not (cmd.help or "").strip()]
    assert missing == []


def test_help_does_not_import_heavy_libraries(clean_env) -> None:
    probe = (
        "import sys; from identity_cli.main import main; code = main(['--help']);"
        "heavy = [m for m in ('torch', 'dlib', 'onnxruntime', 'qdrant_client', 'qdrant_edge', 'cv2')"
        " if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_config_show_masks_secrets(capsys, clean_env, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", "postgresql://identity:hunter2@db/identity")
    monkeypatch.setenv("IDENTITY_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("IDENTITY_QDRANT_API_KEY", "topsecretapikey")
    code, out, _ = run_cli(capsys, "config", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    assert "hunter2" not in out and "topsecretapikey" not in out
    assert shown["vector_engine"] == "qdrant server"
    code, out, _ = run_cli(capsys, "config", "show")
    assert code == 0 and "database_url" in out and "hunter2" not in out


@pytest.mark.parametrize(
    "url, code, message",
    [
        ("postgres:/bad url", 1, "malformed database URL"),
        ("postgresql://postgres@127.0.0.1:1/identity", 4, "cannot reach database"),
    ],
)
def test_bad_database_is_one_line_and_nonzero(capsys, clean_env, monkeypatch, url, code, message) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
    got, out, err = run_cli(capsys, "init")
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_setting_is_a_clean_error(capsys, clean_env, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_WORKERS", "lots")
    code, _, err = run_cli(capsys, "config", "show")
    assert code == 1 and "IDENTITY_WORKERS" in err and "Traceback" not in err


def test_console_script_runs(clean_env) -> None:
    exe = Path(sys.executable).with_name("identity")
    result = subprocess.run([str(exe), "config", "show", "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["model"] is None and shown["effective_model"] == "dlib-resnet@2"
    assert "no active model" in shown["effective_model_source"]


def test_init_is_idempotent_embedded_and_on_postgres(capsys, clean_env, monkeypatch, postgres_url, tmp_path) -> None:
    for url in (None, postgres_url):
        if url:  # a data dir of its own: the first one's vector store belongs to the SQLite database
            monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
            monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "pg-data"))
        first = run_cli(capsys, "init", "--json")
        second = run_cli(capsys, "init", "--json")
        assert first[0] == second[0] == 0, first[2] + second[2]
        before, after = json.loads(first[1]), json.loads(second[1])
        assert before["schema_after"] == after["schema_after"] == after["schema_before"]
        assert after["model_id"].startswith("dlib-resnet@") and after["dim"] == 128
        code, out, _ = run_cli(capsys, "version", "--json")
        assert code == 0 and json.loads(out)["schema_database"] == after["schema_after"]


def test_locked_embedded_store_is_a_clear_error(capsys, clean_env, tmp_path) -> None:
    from identity.config import Settings
    from identity.faces import build_pipeline
    from identity.store.vectors import open_vector_index

    settings = Settings.load()
    pipeline = build_pipeline(settings)
    exe = Path(sys.executable).with_name("identity")
    with open_vector_index(settings, pipeline.model_id, pipeline.dim):  # this process holds the shard
        result = subprocess.run([str(exe), "init"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 4
    assert "locked" in result.stderr.lower() or "held" in result.stderr.lower(), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_wrong_dimension_vector_is_a_clear_error(capsys, clean_env) -> None:
    import uuid

    import numpy as np

    from identity.config import Settings
    from identity.errors import DimensionMismatch
    from identity.store.vectors import VectorPoint, open_vector_index

    with open_vector_index(Settings.load(), "dlib-resnet@2", 128) as index:
        with pytest.raises(DimensionMismatch, match="512 dimensions, the collection expects 128"):
            index.upsert([VectorPoint(uuid.uuid4(), uuid.uuid4(), np.ones(512, np.float32))])
