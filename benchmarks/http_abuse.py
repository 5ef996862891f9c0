"""Abusive requests against `identity serve` on loopback: for each, the answer, the bytes spooled and peak memory.

    .venv/bin/python benchmarks/http_abuse.py [--json] [--only NAME] [--skip-slow]

A temporary data dir gets one enrolled person and a key per role; then each case starts a
fresh `identity serve` on 127.0.0.1 (so its peak memory is its own), sends its request and
prints one row: the status, the seconds until the answer, the most bytes the server held in
temp files at once (files under <data dir>/tmp and temp files it holds open, deleted or not),
and the server's peak memory (VmHWM from /proc/<pid>/status) and its growth over the
memory it had when ready. Bodies are generated as they are sent, never held whole; every
loop is bounded and the server is stopped after each case. Loopback only.

A case is a function `(Run) -> str` (it returns a note) registered with `@case(item, name)`:
other items of issue 22 add their rows the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_files
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs

LFW = Path(os.environ.get("IDENTITY_LFW", "/work/shared/datasets/lfw-dev"))
MB = 1_000_000
BOUNDARY = "identityabuseboundary"
TIMEOUT_S = 180  # no case waits longer for an answer


@dataclass
class Row:
    item: str
    case: str
    status: str = ""
    before: str = ""  # what main did before issue 22, as the issue measured it
    seconds: float = 0.0
    spooled_mb: float = 0.0
    peak_mb: float = 0.0
    growth_mb: float = 0.0
    note: str = ""


@dataclass
class Run:
    """One case's server: its port and pid, the data dir, the keys, and what it holds in temp files."""

    port: int
    pid: int
    data: Path
    keys: dict[str, str]
    row: Row
    log: Path  # the server's stderr (its log lines)
    spooled: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True)
class Case:
    item: str
    name: str
    env: dict[str, str]  # settings (environment variables) its server runs with
    slow: bool
    before: str
    fn: Callable[[Run], str]


CASES: list[Case] = []


def case(
    item: str, name: str, slow: bool = False, before: str = "", **env: str
) -> Callable[[Callable[[Run], str]], Callable[[Run], str]]:
    """Register a case: the issue item, the row's name, whether --skip-slow leaves it out, what main answered
    before issue 22, its server's env."""

    def register(fn: Callable[[Run], str]) -> Callable[[Run], str]:
        CASES.append(Case(item, name, env, slow, before, fn))
        return fn

    return register


# ---- requests -------------------------------------------------------------------------------


def multipart_stream(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    block = bytes(chunk)
    for _ in range(total // chunk):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def json_stream(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    yield b'{"external_id": "'
    block = b"a" * chunk
    for _ in range(total // chunk):
        yield block
    yield b'"}'


def multipart_files(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (fields or {}).items()
    ]
    for name, data in files:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def send(run: Run, path: str, headers: dict[str, str], body: Iterator[bytes] | bytes) -> tuple[int, str, int]:
    """POST on a raw socket (chunked for a stream), stopping when the answer arrives: (status, body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", run.port), timeout=TIMEOUT_S)
    framing = f"Content-Length: {len(body)}" if isinstance(body, bytes) else "Transfer-Encoding: chunked"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n{head}\r\n".encode())
    reply, answered = bytearray(), threading.Event()
    reader = threading.Thread(target=read_reply, args=(sock, reply, answered), daemon=True)
    reader.start()
    sent = 0
    try:
        for chunk in [body] if isinstance(body, bytes) else body:
            if answered.is_set():
                break
            sock.sendall(chunk if isinstance(body, bytes) else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        else:
            if not isinstance(body, bytes):
                sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and hung up
        pass
    reader.join(TIMEOUT_S)
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a reader still waiting
    except OSError:  # the server hung up first
        pass
    sock.close()
    head_bytes, _, content = bytes(reply).partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1]) if head_bytes.startswith(b"HTTP/") else 0
    return status, content.decode("utf-8", "replace"), sent


def read_reply(sock: socket.socket, reply: bytearray, answered: threading.Event) -> None:
    try:
        while True:
            head, sep, content = bytes(reply).partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.I) if sep else None
            if length and len(content) >= int(length.group(1)):
                break
            data = sock.recv(1 << 16)
            if not data:
                break
            reply.extend(data)
    except OSError:
        pass
    answered.set()


def form(run: Run, role: str | None = None) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {run.keys[role]}"} if role else {}
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **auth}


def answered(run: Run, status: int, content: str, sent: int | None = None) -> str:
    run.row.status = str(status)
    try:
        error = json.loads(content).get("error", "")
    except (ValueError, AttributeError):
        error = content[:80]
    return (f"{sent / MB:.1f} MB sent before the answer; " if sent is not None else "") + str(error)[:110]


def image_bytes(width: int, height: int, fmt: str, colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format=fmt)
    return out.getvalue()


# ---- item 1: bodies before authentication ------------------------------------------------


@case("1", "anonymous 300 MB chunked JSON to /v1/persons", before="read whole, +940 MB memory")
def anonymous_json(run: Run) -> str:
    status, content, sent = send(run, "/v1/persons", {"Content-Type": "application/json"}, json_stream(300 * MB))
    return answered(run, status, content, sent)


@case("1", "800 MB chunked multipart to /v1/search without auth", before="401 after 8.9 s, +797 MB spooled")
def anonymous_multipart(run: Run) -> str:
    status, content, sent = send(run, "/v1/search", form(run), multipart_stream(800 * MB))
    return answered(run, status, content, sent)


@case("1", "Content-Length 800 MB to /v1/search without auth", before="413 (Content-Length checked)")
def anonymous_declared(run: Run) -> str:
    sock = socket.create_connection(("127.0.0.1", run.port), timeout=TIMEOUT_S)
    sock.sendall(
        f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {800 * MB}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
    )
    reply, done = bytearray(), threading.Event()
    read_reply(sock, reply, done)  # nothing of the body sent: the answer must come from the headers alone
    sock.close()
    head, _, content = bytes(reply).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return answered(run, status, content.decode(), 0)


@case("1", "search key: 200 MB chunked multipart to /v1/search (limit 20 MB)", before="read whole (chunked unchecked)")
def keyed_multipart(run: Run) -> str:
    status, content, sent = send(run, "/v1/search", form(run, "search"), multipart_stream(200 * MB))
    return answered(run, status, content, sent)


# ---- item 2: cheap requests that would hold inference --------------------------------------


@case("2", "20 blank 2.5 KB JPEGs in one search", before="63 s of one thread")
def many_blank(run: Run) -> str:
    blank = image_bytes(640, 480, "JPEG", (255, 255, 255))
    status, content, _ = send(
        run, "/v1/search", form(run, "search"), multipart_files([(f"{n}.jpg", blank) for n in range(20)])
    )
    return answered(run, status, content)


@case("2", "four 8000x7000 PNGs in one search", before="no per-request limit")
def huge_in_one(run: Run) -> str:
    png = huge_png()
    status, content, _ = send(
        run, "/v1/search", form(run, "search"), multipart_files([(f"{n}.png", png) for n in range(4)])
    )
    return answered(run, status, content) + f" ({len(png) // 1000} KB each)"


@case("2", "four 8000x7000 PNGs in parallel searches", slow=True, before="27 s, +1.36 GB")
def huge_in_parallel(run: Run) -> str:
    png = huge_png()
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda n: send(run, "/v1/search", form(run, "search"), multipart_files([(f"{n}.png", png)])), range(4)
            )
        )
    statuses = sorted(str(status) for status, _, _ in answers)
    run.row.status = ",".join(statuses)
    return answered(run, answers[0][0], answers[0][1]) if any(s != "422" for s in statuses) else "no face in any"


_PNG: list[bytes] = []


def huge_png() -> bytes:
    if not _PNG:
        _PNG.append(image_bytes(8000, 7000, "PNG"))
    return _PNG[0]


# ---- item 8: uploads that become no image row ---------------------------------------------


def upload_then_count(run: Run, person: str, name: str, data: bytes) -> str:
    """Upload one photo for enrollment, wait for its job to finish, and count the copies left under uploads/."""
    status, content, _ = send(
        run, "/v1/enrollments/uploads", form(run, "enroll"), multipart_files([(name, data)], {"person": person})
    )
    run.row.status = str(status)
    batch = json.loads(content).get("batch")
    outcome = None
    for _ in range(TIMEOUT_S * 5):  # until the background runner has finished the job
        jobs = get_json(run, f"/v1/jobs?batch={batch}", "enroll")["items"]
        if jobs and all(j["status"] not in ("queued", "running") for j in jobs):
            outcome = jobs[0]["outcome"]
            break
        time.sleep(0.2)
    left = [p for p in (run.data / "uploads").rglob("*") if p.is_file() and name in p.name]
    return f"job {outcome}; {len(left)} copy left under uploads/"


def get_json(run: Run, path: str, role: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", run.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {run.keys[role]}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        reply, done = bytearray(), threading.Event()
        read_reply(sock, reply, done)
    return json.loads(bytes(reply).partition(b"\r\n\r\n")[2])


@case("8", "enroll upload of a photo enrolled for someone else (conflict)", before="copy left forever")
def upload_conflict(run: Run) -> str:
    return upload_then_count(run, "Someone_Else", "conflict.jpg", enrolled_photo().read_bytes())


@case("8", "enroll upload of a non-image", before="copy left forever")
def upload_not_image(run: Run) -> str:
    return upload_then_count(run, "Someone_Else", "notes.jpg", b"this is no image" * 100)


def enrolled_photo() -> Path:
    return sorted(LFW.glob("*/*.jpg"))[0]


from abuse_items import register_items  # noqa: E402  (items 4-7 and 9-15, in their own module)

register_items(case)


# ---- the harness ------------------------------------------------------------------------------


def prepare(data: Path) -> dict[str, str]:
    """One person enrolled (from outside uploads/), and a key per role. Under umask 077, as the CLI's entry
    point does (this stands in for `identity enroll` and `identity keys create`), so item 7 sees the modes a
    deployment has."""
    os.umask(0o077)
    settings = Settings(data_dir=data, workers=1)
    huge_png()  # made once, before any case is timed
    photo = enrolled_photo()
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_files(photo.parent.name, [photo]))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
    with App.open(settings) as core:
        return {role: create_key(core, f"abuse-{role}", role).key for role in ("search", "enroll", "admin")}


def memory_kb(pid: int, field_name: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def temp_bytes(pid: int, data: Path) -> int:
    """Bytes in temp files now: named ones under <data dir>/tmp, and those the server holds open that are
    deleted (spooled files are unlinked at once) or in the system temp folder outside the data dir."""
    spool = data / "tmp"
    total = sum(p.stat().st_size for p in spool.rglob("*") if p.is_file()) if spool.exists() else 0
    system_tmp = tempfile.gettempdir() + "/"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return total
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(link)
            elsewhere = target.startswith(system_tmp) and not target.startswith(f"{data}/")
            if (target.endswith(" (deleted)") or elsewhere) and os.path.isfile(link):
                total += os.stat(link).st_size
        except OSError:
            continue
    return total


def serve(data: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "identity_cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "IDENTITY_DATA_DIR": str(data), **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    for _ in range(1200):  # at most 120 s to load the models
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return server, port
        except OSError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"identity serve exited with {server.returncode}")
        time.sleep(0.1)
    server.kill()
    raise SystemExit("identity serve did not become ready in 120 s")


def run_case(data: Path, keys: dict[str, str], one: Case) -> Row:
    log = data.parent / "serve.log"  # outside the data dir: item 7 walks that
    server, port = serve(data, {k.upper(): v for k, v in one.env.items()}, log)
    run = Run(port, server.pid, data, keys, Row(one.item, one.name, before=one.before), log)
    ready_kb, stop = memory_kb(server.pid, "VmRSS"), threading.Event()

    def sample() -> None:
        while not stop.is_set():
            run.spooled[0] = max(run.spooled[0], temp_bytes(server.pid, data))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        run.row.note = one.fn(run)
    finally:
        run.row.seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        peak_kb = memory_kb(server.pid, "VmHWM")
        server.terminate()
        server.wait(timeout=60)
    run.row.spooled_mb = run.spooled[0] / MB
    run.row.peak_mb, run.row.growth_mb = peak_kb / 1000, (peak_kb - ready_kb) / 1000
    return run.row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the cases marked slow")
    args = parser.parse_args()
    console = Console(stderr=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="identity-abuse-") as tmp:
        data = Path(tmp) / "data"
        keys = prepare(data)
        for one in sorted(CASES, key=lambda c: int(c.item)):  # in item order; sorted() keeps a row's place
            if (args.only and args.only not in one.name) or (args.skip_slow and one.slow):
                continue
            console.print(f"item {one.item}: {one.name} ...", highlight=False)
            rows.append(run_case(data, keys, one))
        shutil.rmtree(data, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title="identity serve under abusive requests (loopback, one fresh server per row)")
    for column in ("item", "request", "before (main)", "status", "s", "spooled MB", "peak MB", "growth MB", "note"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.item,
            r.case,
            r.before,
            r.status,
            f"{r.seconds:.2f}",
            f"{r.spooled_mb:.1f}",
            f"{r.peak_mb:.0f}",
            f"{r.growth_mb:+.0f}",
            r.note,
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
