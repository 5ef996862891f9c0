"""Issue 22, items 1, 2 and 8: bounded bodies before authentication, bounded work per search, no orphan uploads.

Bodies are sent chunked to a real uvicorn on loopback (the test client reads a streamed body
whole before the app sees it), so the tests see how much the server took before it answered.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from served import served

from identity.api.app import create_api
from identity.app.core import App, open_deployment
from identity.config import ApiSettings, EnrollSettings, Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory, from_files
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity_cli.main import main

PEOPLE = {"Aaron_Peirsol": 2, "Al_Gore": 2}
MB = 1_000_000


def photo(lfw: Path, person: str, n: int) -> Path:
    return lfw / person / f"{person}_{n:04d}.jpg"


@dataclasses.dataclass
class Gallery:
    settings: Settings
    keys: dict[str, str]
    lfw: Path

    def with_api(self, **api: Any) -> Settings:
        return dataclasses.replace(self.settings, api=dataclasses.replace(self.settings.api, **api))


def settings_under(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        workers=1,
        enroll=EnrollSettings(chunk_size=4),
        api=ApiSettings(max_upload_mb=2, inference_workers=1),
    )


def with_keys(settings: Settings, lfw: Path) -> Gallery:
    with App.open(settings) as core:
        keys = {role: create_key(core, f"{role}-key", role).key for role in ("search", "enroll")}
    return Gallery(settings, keys, lfw)


@pytest.fixture
def keyed(tmp_path: Path, lfw_dir: Path) -> Gallery:
    """An empty store with a search and an enroll key: the limits need no one enrolled."""
    return with_keys(settings_under(tmp_path), lfw_dir)


@pytest.fixture
def gallery(tmp_path: Path, lfw_dir: Path) -> Gallery:
    """Two people enrolled from a folder outside uploads/, and the keys."""
    settings = settings_under(tmp_path)
    root = tmp_path / "photos"
    for person, count in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for n in range(1, count + 1):
            shutil.copy(photo(lfw_dir, person, n), root / person)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
    return with_keys(settings, lfw_dir)


@contextmanager
def client_for(settings: Settings) -> Iterator[TestClient]:
    with App.open(settings) as core, TestClient(create_api(core)) as client:
        yield client


@contextmanager
def live(settings: Settings) -> Iterator[int]:
    """`identity serve`'s app under a real uvicorn on a free loopback port (yields the port)."""
    with App.open(settings) as core, served(core) as base:
        yield int(base.rsplit(":", 1)[1])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def jpeg(size: int = 32) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 200, 200)).save(out, format="JPEG")
    return out.getvalue()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return out.getvalue()


BOUNDARY = "identitylimitsboundary"


def multipart(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """One image part of `total` zero bytes, generated as it is sent (never held whole)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    block = bytes(chunk)
    for _ in range(total // chunk):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def json_body(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    yield b'{"external_id": "'
    block = b"a" * chunk
    for _ in range(total // chunk):
        yield block
    yield b'"}'


@dataclasses.dataclass
class Reply:
    status: int
    body: dict[str, Any]
    sent: int  # body bytes the server let the client send before it answered


def post_chunked(
    port: int, path: str, headers: dict[str, str], chunks: Iterator[bytes], abort_after: int | None = None
) -> Reply | None:
    """POST a chunked body, stopping when the answer arrives (or after `abort_after` bytes, hanging up)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
    reply, answered = bytearray(), threading.Event()
    reader = threading.Thread(target=_read_reply, args=(sock, reply, answered), daemon=True)
    reader.start()
    sent = 0
    try:
        for chunk in chunks:
            if answered.is_set() or (abort_after is not None and sent >= abort_after):
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        else:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed the connection
        pass
    if abort_after is not None:
        sock.shutdown(socket.SHUT_RDWR)  # hangs up (and wakes the reader)
        sock.close()
        return None
    reader.join(60)
    sock.close()
    head_bytes, _, content = bytes(reply).partition(b"\r\n\r\n")
    return Reply(int(head_bytes.split(b" ", 2)[1]), json.loads(content), sent)


def _read_reply(sock: socket.socket, reply: bytearray, answered: threading.Event) -> None:
    """Read one response (headers and a Content-Length body) into `reply`."""
    try:
        while True:
            head, sep, content = bytes(reply).partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.I) if sep else None
            if length and len(content) >= int(length.group(1)):
                break
            data = sock.recv(65536)
            if not data:
                break
            reply.extend(data)
    except OSError:
        pass
    answered.set()


def spool_files(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "tmp").rglob("*"))


# Item 1: bodies are bounded by who is calling, before anything reads them.


def test_anonymous_chunked_bodies_are_refused_after_the_small_allowance(keyed: Gallery) -> None:
    with live(keyed.settings) as port:
        search = post_chunked(
            port, "/v1/search", {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, multipart(100 * MB)
        )
        persons = post_chunked(port, "/v1/persons", {"Content-Type": "application/json"}, json_body(100 * MB))
        bad_key = post_chunked(
            port,
            "/v1/search",
            {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **auth("idk_nope_nope")},
            multipart(100 * MB),
        )
    for reply in (search, persons, bad_key):
        assert reply is not None and reply.status == 413, reply
        assert reply.body["detail"] == {"limit_bytes": 64_000, "authenticated": False}
        assert "without a valid key" in reply.body["error"]
        assert reply.sent < 16 * MB  # socket buffers, not the body: the server stopped reading
    assert spool_files(keyed.settings) == []


def test_a_keyed_chunked_body_is_refused_at_the_full_limit_and_an_aborted_one_leaves_no_file(keyed: Gallery) -> None:
    with live(keyed.settings) as port:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **auth(keyed.keys["search"])}
        reply = post_chunked(port, "/v1/search", headers, multipart(100 * MB))
        assert reply is not None and reply.status == 413 and reply.body["detail"]["limit_bytes"] == 2 * MB
        assert reply.body["detail"]["authenticated"] is True and reply.sent < 20 * MB
        post_chunked(port, "/v1/search", headers, multipart(100 * MB), abort_after=int(1.5 * MB))  # spooled, then gone
        time.sleep(1.0)
        spool = keyed.settings.data_dir / "tmp"
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700
        assert spool_files(keyed.settings) == []


def test_content_length_over_the_anonymous_allowance_is_refused_unread_but_a_key_or_session_gets_the_full_limit(
    keyed: Gallery,
) -> None:
    big = [("image", ("big.jpg", bytes(100_000), "image/jpeg"))]
    left = keyed.settings.data_dir / "tmp" / "identity-api-killed" / "000" / "photo.jpg"  # a killed server's
    left.parent.mkdir(parents=True)
    left.write_bytes(b"x")
    for path in (left, left.parent, left.parent.parent):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    with client_for(keyed.settings) as client:
        assert not left.parent.parent.exists()  # removed when the server started
        anonymous = client.post("/v1/search", files=big)
        assert anonymous.status_code == 413 and anonymous.json()["detail"]["limit_bytes"] == 64_000
        with_key = client.post("/v1/search", files=big, headers=auth(keyed.keys["search"]))
        assert with_key.status_code == 422  # read and tried: not an image
        assert client.post("/ui/search", files=big, data={"csrf": "x"}).status_code == 413
        signed_in = client.post("/ui/login", data={"key": keyed.keys["search"]}, follow_redirects=False)
        assert signed_in.status_code == 303
        page = client.post("/ui/search", files=big, data={"csrf": "x"})
        assert page.status_code == 403  # past the body limit, to the route's CSRF check
        small = client.post(
            "/v1/search", files=[("image", ("a.jpg", b"x" * 1000, "image/jpeg"))], headers=auth("idk_nope_nope")
        )
        assert small.status_code == 401  # a small body reaches the route, which says why
        assert spool_files(keyed.settings) == []


# Item 2: what one search may ask of the inference pool.


def test_too_many_images_in_one_search_are_refused_before_any_inference(keyed: Gallery) -> None:
    files = [("image", (f"{n}.jpg", jpeg(), "image/jpeg")) for n in range(11)]
    with client_for(keyed.settings) as client:
        answer = client.post("/v1/search", files=files, headers=auth(keyed.keys["search"]))
    assert answer.status_code == 413, answer.text
    assert answer.json()["detail"] == {"images": 11, "limit": 10}
    assert "IDENTITY_API__MAX_IMAGES_PER_REQUEST" in answer.json()["error"]


def test_pixels_summed_from_the_headers_are_limited_on_the_api_and_the_ui(keyed: Gallery) -> None:
    settings = keyed.with_api(max_pixels_per_request=1_000_000)
    two = [("image", (f"{n}.png", png(800, 800), "image/png")) for n in range(2)]
    with client_for(settings) as client:
        answer = client.post("/v1/search", files=two, headers=auth(keyed.keys["search"]))
        assert answer.status_code == 413 and answer.json()["detail"] == {"pixels": 1_280_000, "limit": 1_000_000}
        enroll_now = client.post("/v1/persons/Someone/faces", files=two, headers=auth(keyed.keys["enroll"]))
        assert enroll_now.status_code == 413 and not list((keyed.settings.data_dir / "uploads").rglob("*.png"))
        one = client.post("/v1/search", files=two[:1], headers=auth(keyed.keys["search"]))
        assert one.status_code == 422  # within the limit: analysed (no face in a grey square)
        client.post("/ui/login", data={"key": keyed.keys["search"]})
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/search").text).group(1)
        page = client.post(
            "/ui/search", files=[("image", ("big.png", png(1100, 1000), "image/png"))], data={"csrf": csrf}
        )
        assert page.status_code == 413 and "MAX_PIXELS_PER_REQUEST" in page.text


def test_a_search_past_its_deadline_is_a_503_with_retry_after(keyed: Gallery) -> None:
    settings = keyed.with_api(request_deadline_seconds=0.01)
    files = [("image", (f"{n}.jpg", photo(keyed.lfw, "Al_Gore", 1).read_bytes(), "image/jpeg")) for n in range(3)]
    with client_for(settings) as client:
        answer = client.post("/v1/search", files=files, headers=auth(keyed.keys["search"]))
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1" and answer.json()["detail"] == {"deadline_s": 0.01}
        client.post("/ui/login", data={"key": keyed.keys["search"]})
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/search").text).group(1)
        page = client.post("/ui/search", files=files[:1], data={"csrf": csrf})
        assert page.status_code == 503 and "deadline" in page.text and page.headers["Retry-After"] == "1"


# Item 8: an uploaded copy that becomes nobody's photo does not stay.


def upload_files(settings: Settings) -> list[str]:
    root = settings.data_dir / "uploads"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def wait_for_jobs(client: TestClient, key: str, batches: list[str]) -> list[dict[str, Any]]:
    for _ in range(300):
        jobs = [j for j in client.get("/v1/jobs", headers=auth(key)).json()["items"] if j["batch"] in batches]
        if jobs and all(j["status"] not in ("queued", "running") for j in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"jobs still open: {jobs}")


def test_uploads_that_become_no_image_row_are_removed_at_once(gallery: Gallery) -> None:
    lfw, key = gallery.lfw, gallery.keys["enroll"]
    cases = [
        ("Someone_Else", "conflict.jpg", photo(lfw, "Aaron_Peirsol", 1).read_bytes()),  # Aaron's photo
        ("Al_Gore", "duplicate.jpg", photo(lfw, "Al_Gore", 1).read_bytes()),
        ("New_Person", "text.jpg", b"this is no image"),
        ("New_Person", "blank.jpg", jpeg(200)),  # no face
        ("Aaron_Peirsol", "kept.jpg", photo(lfw, "Aaron_Peirsol", 2).read_bytes() + b"\0"),
    ]
    with client_for(gallery.settings) as client:
        batches = []
        for person, name, data in cases:
            answer = client.post(
                "/v1/enrollments/uploads",
                data={"person": person},
                headers=auth(key),
                files=[("image", (name, data, "image/jpeg"))],
            )
            assert answer.status_code == 202, answer.text
            batches.append(answer.json()["batch"])
        outcomes = {j["source_path"].rsplit("/", 1)[-1]: j["outcome"] for j in wait_for_jobs(client, key, batches)}
        refused = client.post(
            "/v1/enrollments/uploads",
            data={"person": " "},
            headers=auth(key),
            files=[("image", ("x.jpg", jpeg(), "image/jpeg"))],
        )
        assert refused.status_code == 422
    assert outcomes == {
        "conflict.jpg": "conflict",
        "duplicate.jpg": "duplicate",
        "text.jpg": "failed",
        "blank.jpg": "rejected",
        "kept.jpg": "enrolled",
    }, outcomes
    assert upload_files(gallery.settings) == ["kept.jpg"]
    assert len(os.listdir(gallery.settings.data_dir / "uploads")) == 1  # the other requests' folders went too


def test_doctor_finds_and_removes_orphan_uploads_but_not_a_photo_held_or_queued(
    gallery: Gallery, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, lfw = gallery.settings, gallery.lfw
    uploads = settings.data_dir / "uploads"
    held, queued, orphan = (uploads / "a" / "held.jpg", uploads / "b" / "queued.jpg", uploads / "c" / "orphan.jpg")
    for path, source in (
        (held, photo(lfw, "Al_Gore", 2)),
        (queued, photo(lfw, "Al_Gore", 2)),
        (orphan, photo(lfw, "Aaron_Peirsol", 1)),
    ):
        path.parent.mkdir(parents=True)
        shutil.copy(source, path)
    held.write_bytes(held.read_bytes() + b"\0")  # other bytes than the gallery's copy: a new image row
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_files("Al_Gore", [held]))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        queue_jobs(dep.app, from_files("Al_Gore", [queued]))  # waits for a worker
    old = time.time() - 2 * 86_400  # older than a lease: no request is still queueing them
    for path in (held, queued, orphan):
        os.utime(path, (old, old))
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("IDENTITY_WORKERS", "1")
    assert main(["doctor", "--json"]) != 0
    report = json.loads(capsys.readouterr().out)
    assert report["orphan_uploads"] == 1 and report["clean"] is False
    assert main(["doctor", "--repair", "--json"]) == 0
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["repaired"]["orphan_uploads_removed"] == 1, repaired
    assert held.exists() and queued.exists() and not orphan.exists() and not orphan.parent.exists()
