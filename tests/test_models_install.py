"""`identity models install/list/remove`: a detector file is installed only when it is the pinned one."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.app.core import App
from identity.app.registry import record_model
from identity.config import Settings
from identity.faces.installed import YUNET
from identity_cli.main import main

YUNET_FILE = Path(__file__).resolve().parents[2] / "shared" / "models" / "yunet_n_dynamic.onnx"
needs_yunet = pytest.mark.skipif(not YUNET_FILE.is_file(), reason=f"YuNet's model file not found at {YUNET_FILE}")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def detectors_folder(clean_env: dict[str, str]) -> Path:
    return Path(clean_env["IDENTITY_DATA_DIR"]) / "detectors"


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server: /good.onnx (the pinned file), /wrong.onnx (another file), /truncated.onnx."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(YUNET_FILE, served / "good.onnx")
    (served / "wrong.onnx").write_bytes(b"not a model " * 1000)
    (served / "truncated.onnx").write_bytes(YUNET_FILE.read_bytes()[: YUNET.size // 2])
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@needs_yunet
def test_download_checks_the_digest_and_installs_once(capsys, clean_env, mirror) -> None:
    code, out, _ = run(capsys, "models", "install", "yunet", "--url", f"{mirror}/good.onnx", "--json")
    assert code == 0
    report = json.loads(out)
    installed = detectors_folder(clean_env) / YUNET.filename
    assert report["path"] == str(installed) and report["sha256"] == YUNET.sha256 and not report["already_installed"]
    assert installed.read_bytes() == YUNET_FILE.read_bytes()
    assert sorted(p.name for p in installed.parent.iterdir()) == [YUNET.filename]  # no temporary file left

    code, out, _ = run(capsys, "models", "install", "yunet", "--url", f"{mirror}/good.onnx")
    assert code == 0 and "already installed" in out


@needs_yunet
@pytest.mark.parametrize("served", ["wrong.onnx", "truncated.onnx"])
def test_a_wrong_or_truncated_download_is_refused_and_nothing_installed(capsys, clean_env, mirror, served) -> None:
    code, out, err = run(capsys, "models", "install", "yunet", "--url", f"{mirror}/{served}")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"expected {YUNET.sha256}" in err and "nothing installed" in err
    assert list(detectors_folder(clean_env).iterdir()) == []

    code, out, _ = run(capsys, "models", "install", "yunet", "--url", f"{mirror}/{served}", "--json")
    refused = json.loads(out)
    assert code == 1 and refused["expected_sha256"] == YUNET.sha256 and refused["actual_sha256"] != YUNET.sha256


@needs_yunet
def test_install_from_a_file_and_a_non_onnx_file_is_refused(capsys, clean_env, tmp_path) -> None:
    not_onnx = tmp_path / "yunet.onnx"
    not_onnx.write_text("hello")
    code, _, err = run(capsys, "models", "install", "yunet", "--from", str(not_onnx))
    assert code == 1 and f"{not_onnx} is not the yunet model file" in err and YUNET.sha256 in err
    assert list(detectors_folder(clean_env).iterdir()) == []

    code, out, _ = run(capsys, "models", "install", "yunet", "--from", str(YUNET_FILE), "--json")
    assert code == 0 and json.loads(out)["source"] == str(YUNET_FILE)
    code, out, _ = run(capsys, "models", "list", "--json")
    [row] = json.loads(out)["detectors"]
    assert row["name"] == "yunet" and row["installed"] is True and row["packs"] == ["yunet-dlib-resnet"]


def test_offline_says_where_to_get_the_file(capsys, clean_env) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run(capsys, "models", "install", "yunet", "--url", f"http://127.0.0.1:{port}/yunet.onnx")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert YUNET.url in err and "identity models install yunet --from FILE" in err
    assert list(detectors_folder(clean_env).iterdir()) == []


def test_list_shows_packs_and_detectors_not_installed(capsys, clean_env) -> None:
    code, out, _ = run(capsys, "models", "list", "--json")
    listing = json.loads(out)
    assert code == 0 and "dlib-resnet@2" in {p["model_id"] for p in listing["packs"]}
    assert [(d["name"], d["installed"]) for d in listing["detectors"]] == [("yunet", False)]
    assert run(capsys, "models", "remove", "yunet")[0] == 1
    assert run(capsys, "models", "install", "nope", "--from", "x")[0] == 1
    assert run(capsys, "models", "install", "yunet", "--from", "x", "--url", "http://127.0.0.1:1/x")[0] == 1


def test_a_new_store_says_why_it_gets_the_default_model(capsys, clean_env) -> None:
    from identity.faces.packs import default_model, resolve

    model, reason = default_model(Settings.load())
    version = json.loads(run(capsys, "version", "--json")[1])
    assert version["model"].startswith(model) and version["detector"] == resolve(model).info.detector
    assert version["model_source"] == f"the default: the store has no active model yet ({reason})"


@needs_yunet
def test_remove_refuses_while_the_store_detects_with_it(capsys, clean_env) -> None:
    assert run(capsys, "models", "install", "yunet", "--from", str(YUNET_FILE))[0] == 0
    installed = detectors_folder(clean_env) / YUNET.filename
    with App.open(Settings.load()) as app:
        record_model(app, "yunet-dlib-resnet@1", 128)  # the store's first model: its active one
    code, _, err = run(capsys, "models", "remove", "yunet")
    assert code == 1 and "used by model yunet-dlib-resnet@1" in err and installed.is_file()


@needs_yunet
def test_remove_deletes_a_detector_no_store_uses(capsys, clean_env) -> None:
    assert run(capsys, "models", "install", "yunet", "--from", str(YUNET_FILE))[0] == 0
    with App.open(Settings.load()) as app:
        record_model(app, "dlib-resnet@2", 128)
    code, out, _ = run(capsys, "models", "remove", "yunet", "--json")
    assert code == 0 and json.loads(out)["removed"].endswith(YUNET.filename)
    assert not (detectors_folder(clean_env) / YUNET.filename).exists()


@needs_yunet
def test_an_existing_store_keeps_its_model_after_yunet_is_installed(capsys, clean_env, lfw_dir) -> None:
    from identity.store.sql.model_rows import list_models

    first, second = (str(p) for p in sorted((lfw_dir / "Al_Gore").iterdir())[:2])
    assert run(capsys, "enroll", "--person", "Al_Gore", first)[0] == 0
    before = json.loads(run(capsys, "models", "show", "--json")[1])
    assert before["model"] == "dlib-resnet@2" and before["model_source"] == "the store's active model"

    assert run(capsys, "models", "install", "yunet", "--from", str(YUNET_FILE))[0] == 0
    assert run(capsys, "enroll", "--person", "Al_Gore", second)[0] == 0
    code, out, _ = run(capsys, "search", first, "--json")
    assert code == 0 and json.loads(out)["results"][0]["model"] == "dlib-resnet@2"
    after = json.loads(run(capsys, "models", "show", "--json")[1])
    assert (after["model"], after["collection"]) == (before["model"], before["collection"])
    version = json.loads(run(capsys, "version", "--json")[1])
    assert (version["model"], version["model_source"]) == ("dlib-resnet@2", "the store's active model")
    with App.open(Settings.load()) as app, app.sessions() as session:
        assert [m.model_id for m in list_models(session)] == ["dlib-resnet@2"]  # no second model, no new collection

    # Moving the store is a reindex, as for any model switch; a new store would have got YuNet by itself.
    code, out, _ = run(capsys, "reindex", "--model", "yunet-dlib-resnet", "--json")
    moved = json.loads(out)
    assert code == 0 and (moved["model_after"], moved["reindexed"], moved["switched"]) == (
        "yunet-dlib-resnet@1",
        2,
        True,
    )
    code, out, _ = run(capsys, "search", first, "--json")
    [face] = json.loads(out)["results"][0]["faces"]
    assert (face["detector"], face["candidates"][0]["person"]["external_id"]) == ("yunet", "Al_Gore")
    assert run(capsys, "models", "remove", "yunet")[0] == 1  # the store detects with it now
