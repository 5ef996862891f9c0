"""Issue 22, items 4, 9, 10, 15: revocable UI sessions in SQL, key expiry, failed-auth throttling,
login CSRF, CORS, request ids, and logs that name no person. Real SQLite/Postgres, the real app."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from identity.app.core import App
from identity.config import ApiSettings, Settings
from identity.services.access.keys import create_key, parse_expiry
from identity.store.sql.tables import utcnow

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from identity.api.app import create_api  # noqa: E402
from identity.api.request_id import LOG_CONFIG, RedactingFormatter, WithRequestId  # noqa: E402
from identity.api.session import COOKIE  # noqa: E402

ROLES = ("search", "enroll", "audit", "admin")


def _server(tmp_path: Path, database_url: str | None):
    """Open the API over one store with one key per role; `start(**api_settings)` -> (client, keys, core).
    A second start closes the first server and opens another over the same store and keys. The app's
    lifespan is not run, so the face models load only in the tests that search or enroll."""
    opened: list = []
    keys: dict[str, str] = {}

    def close() -> None:
        while opened:
            api, core = opened.pop()
            api.state.ctx.close()
            core.__exit__(None, None, None)

    def start(**api_settings: object):
        close()
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            workers=1,
            api=ApiSettings(inference_workers=1, **api_settings),
        )
        core = App.open(settings).__enter__()
        keys.update({role: create_key(core, f"{role}-key", role).key for role in ROLES if role not in keys})
        api = create_api(core)
        opened.append((api, core))
        return TestClient(api), dict(keys), core

    return start, close


@pytest.fixture
def serve(tmp_path: Path, database_url: str):
    """The server over SQLite and over Postgres: for what the session and key rows decide."""
    start, close = _server(tmp_path, None if database_url.startswith("sqlite") else database_url)
    yield start
    close()


@pytest.fixture
def serve_sqlite(tmp_path: Path):
    """The server over SQLite only: for what is decided in the process (throttle, headers, logs)."""
    start, close = _server(tmp_path, None)
    yield start
    close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sign_in(client: TestClient, key: str, **headers: str):
    return client.post("/ui/login", data={"key": key}, headers=headers, follow_redirects=False)


def csrf_of(client: TestClient, page: str = "/ui/persons") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)[1]


def opens(client: TestClient, cookie: str, page: str = "/ui/persons") -> bool:
    """Whether a browser holding only this cookie sees the page (not sent to sign in)."""
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie, path="/ui")
    return client.get(page, follow_redirects=False).status_code == 200


# item 4: sessions -----------------------------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_is_refused_after(serve) -> None:
    client, keys, _ = serve()
    assert sign_in(client, keys["audit"]).status_code == 303
    copied = client.cookies[COOKIE]
    assert opens(client, copied)
    out = client.post("/ui/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303
    assert not opens(client, copied)


def test_the_session_id_rotates_at_sign_in_and_the_old_one_ends(serve) -> None:
    client, keys, _ = serve()
    sign_in(client, keys["audit"])
    before = client.cookies[COOKIE]
    assert sign_in(client, keys["audit"]).status_code == 303  # a second sign-in in the same browser
    after = client.cookies[COOKIE]
    assert after != before
    assert opens(client, after) and not opens(client, before)


def test_revoking_a_key_ends_its_sessions_at_once(serve) -> None:
    client, keys, _ = serve()
    sign_in(client, keys["audit"])
    cookie = client.cookies[COOKIE]
    assert client.delete("/v1/keys/audit-key", headers=bearer(keys["admin"])).status_code == 200
    assert not opens(client, cookie)


def test_an_expired_key_is_refused_like_a_revoked_one_and_ends_its_sessions(serve) -> None:
    client, _, core = serve()
    short = create_key(core, "short", "admin", expires_at=utcnow() + timedelta(seconds=1.5)).key
    assert client.get("/v1/keys", headers=bearer(short)).status_code == 200
    sign_in(client, short)
    cookie = client.cookies[COOKIE]
    assert opens(client, cookie)
    time.sleep(1.6)
    expired = client.get("/v1/keys", headers=bearer(short))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    assert not opens(client, cookie)
    assert sign_in(client, short).status_code == 401


def test_the_cookie_is_secure_when_the_server_runs_behind_tls(serve_sqlite) -> None:
    client, keys, _ = serve_sqlite(behind_tls=True)
    signed = sign_in(client, keys["audit"])
    assert "secure" in signed.headers["set-cookie"].lower()
    plain, keys2, _ = serve_sqlite()
    assert "secure" not in sign_in(plain, keys2["audit"]).headers["set-cookie"].lower()


def test_sessions_are_stored_hashed(serve, tmp_path: Path) -> None:
    client, keys, core = serve()
    sign_in(client, keys["audit"])
    from itsdangerous import URLSafeTimedSerializer

    from identity.api.session import session_secret

    token = URLSafeTimedSerializer(session_secret(core.settings), salt="identity-ui").loads(client.cookies[COOKIE])
    from sqlalchemy import text

    with core.sessions() as session:
        stored = session.execute(text("SELECT token_hash FROM ui_sessions")).scalars().all()
    assert len(stored) == 1 and token not in stored[0]


# key expiry -------------------------------------------------------------------------------------------


def test_expiry_formats() -> None:
    now = utcnow()
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("30m", now) == now + timedelta(minutes=30)
    assert parse_expiry("2999-01-31", now).isoformat() == "2999-01-31T00:00:00+00:00"
    assert parse_expiry("2999-01-31T12:00:00+02:00", now).isoformat() == "2999-01-31T10:00:00+00:00"
    from identity.errors import InvalidArgument

    for bad in ("90", "3w", "yesterday", "2000-01-01", "-5d"):
        with pytest.raises(InvalidArgument):
            parse_expiry(bad, now)


def test_keys_create_expires_in_is_shown_by_keys_list(clean_env: dict[str, str]) -> None:
    exe = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "identity"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)

    made = run("keys", "create", "ops", "--role", "audit", "--expires-in", "90d", "--json")
    assert made.returncode == 0, made.stderr
    expires = json.loads(made.stdout)["expires_at"]
    assert expires.startswith(str((utcnow() + timedelta(days=90)).date()))
    listed = json.loads(run("keys", "list", "--json").stdout)
    assert [k["expires_at"] for k in listed] == [expires]
    bad = run("keys", "create", "other", "--role", "audit", "--expires-in", "soon")
    assert bad.returncode == 1 and "soon" in bad.stderr and "Nd" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# item 10: throttling ----------------------------------------------------------------------------------


def test_wrong_secrets_for_a_key_id_get_429_with_retry_after_and_no_key_material_logged(serve_sqlite, caplog) -> None:
    client, keys, _ = serve_sqlite(auth_failures=5, auth_window_s=60)
    key_id = keys["admin"].split("_")[1]
    caplog.set_level(logging.DEBUG)
    codes = [client.get("/v1/keys", headers=bearer(f"idk_{key_id}_wrongsecret{n}")).status_code for n in range(7)]
    assert codes == [401] * 5 + [429] * 2
    throttled = client.get("/v1/keys", headers=bearer(keys["admin"]))  # even the right secret, until the window passes
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json()["detail"]["retry_after_s"] >= 1
    secret = keys["admin"].split("_", 2)[2]
    assert not any(secret in r.getMessage() or "wrongsecret" in r.getMessage() for r in caplog.records)
    assert any("429" in r.getMessage() for r in caplog.records)


def test_failures_from_one_address_are_throttled_across_keys_and_on_the_login_page(serve_sqlite, caplog) -> None:
    client, keys, _ = serve_sqlite(auth_failures=3, auth_window_s=60)
    caplog.set_level(logging.DEBUG)
    for n in range(3):
        assert sign_in(client, f"idk_nokey{n}_s3cret").status_code == 401
    page = sign_in(client, keys["audit"])  # another key, same address: refused too
    assert page.status_code == 429 and "Retry-After" in page.headers
    assert client.get("/v1/keys", headers=bearer(keys["admin"])).status_code == 429
    logged = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert any("401 POST /ui/login" in m for m in logged) and any("429" in m for m in logged)
    assert not any("s3cret" in m or keys["audit"] in m for m in logged)


def test_the_throttle_forgets_failures_after_the_window(serve_sqlite) -> None:
    client, keys, _ = serve_sqlite(auth_failures=2, auth_window_s=1)
    for _ in range(2):
        client.get("/v1/keys", headers=bearer("idk_abc_def"))
    assert client.get("/v1/keys", headers=bearer(keys["admin"])).status_code == 429
    time.sleep(1.1)
    assert client.get("/v1/keys", headers=bearer(keys["admin"])).status_code == 200


# item 15: login CSRF, CORS, request id -------------------------------------------------------------------


def test_a_cross_site_login_post_is_refused(serve_sqlite) -> None:
    client, keys, _ = serve_sqlite()
    assert sign_in(client, keys["audit"], origin="https://evil.example").status_code == 403
    assert sign_in(client, keys["audit"], **{"sec-fetch-site": "cross-site"}).status_code == 403
    assert COOKIE not in client.cookies
    assert (
        sign_in(client, keys["audit"], origin="http://testserver", **{"sec-fetch-site": "same-origin"}).status_code
        == 303
    )


def test_cors_is_off_by_default_and_allows_only_the_listed_origins(serve_sqlite) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    closed, *_ = serve_sqlite()
    answer = closed.options("/v1/search", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    opened, keys, _ = serve_sqlite(cors_origins="https://app.example, https://other.example")
    answer = opened.options("/v1/search", headers=preflight)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"
    listed = opened.get("/v1/keys", headers={"Origin": "https://app.example", **bearer(keys["admin"])})
    assert listed.headers["access-control-allow-origin"] == "https://app.example"
    other = opened.options("/v1/search", headers={**preflight, "Origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_every_response_and_log_line_of_a_request_carries_its_request_id(serve_sqlite) -> None:
    client, keys, _ = serve_sqlite()
    lines: list[str] = []
    handler = _capture(lines)
    try:
        given = client.get("/v1/keys", headers={"X-Request-ID": "trace-42.a", **bearer("idk_abc_def")})
        made = client.get("/healthz", headers={"X-Request-ID": "not sane; <x> " * 20})
    finally:
        _release(handler)
    assert given.headers["X-Request-ID"] == "trace-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    mine = [line for line in lines if "[trace-42.a]" in line]
    assert any("401 GET /v1/keys" in line for line in mine), lines  # the auth warning
    assert any("identity.api.access" in line and "GET /v1/keys 401" in line for line in mine), lines
    assert any(f"[{made.headers['X-Request-ID']}]" in line and "/healthz 200" in line for line in lines)


def test_an_unexpected_error_answers_500_with_the_request_id_and_its_log_names_no_person(
    serve_sqlite, monkeypatch
) -> None:
    from identity.api import routes_persons

    client, keys, _ = serve_sqlite()
    made = client.post(
        "/v1/persons", json={"external_id": "Ext-Delta-5", "display_name": "Dora Delta"}, headers=bearer(keys["admin"])
    ).json()

    def broken(_core: object, person: str) -> None:  # a bug whose message repeats what the caller sent
        raise RuntimeError(f"cannot read {person} (asked as {made['id']})")

    monkeypatch.setattr(routes_persons, "show_person", broken)
    lines: list[str] = []
    handler = _capture(lines)
    try:
        answer = TestClient(client.app, raise_server_exceptions=False).get(
            "/v1/persons/Ext-Delta-5?note=Dora+Delta", headers={"X-Request-ID": "boom-1", **bearer(keys["admin"])}
        )
    finally:
        _release(handler)
    assert answer.status_code == 500 and answer.json()["error"].startswith("internal error")
    assert answer.headers["X-Request-ID"] == "boom-1" and answer.headers["Cache-Control"] == "no-store"
    crash = [line for line in lines if "[boom-1]" in line and "unexpected error" in line]
    assert crash and "RuntimeError: cannot read {person} (asked as" in crash[0], lines
    for needle in ("Ext-Delta-5", "Dora Delta", "Dora+Delta"):
        assert not [line for line in lines if needle in line], needle


def test_the_log_format_takes_out_only_the_current_requests_values() -> None:
    from identity.api.request_id import REQUEST_SCOPE

    formatter = RedactingFormatter("%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "person %s, cost 42.1 ms, Ext-1x", ("Ext-1",), None)
    token = REQUEST_SCOPE.set({"path_params": {"person": "Ext-1"}, "query_string": b"q=a"})
    try:
        assert formatter.format(record) == "person {person}, cost 42.1 ms, Ext-1x"  # whole words; one-letter q kept
    finally:
        REQUEST_SCOPE.reset(token)
    assert formatter.format(record) == "person Ext-1, cost 42.1 ms, Ext-1x"  # outside a request: as written


# item 9: logs name no person --------------------------------------------------------------------------


def test_no_log_line_names_an_erased_person(serve_sqlite, lfw_dir: Path, monkeypatch) -> None:
    client, keys, core = serve_sqlite()
    lines: list[str] = []
    handler = _capture(lines)
    try:
        names = _enroll_and_erase(client, keys, lfw_dir)
        names += _erase_with_a_retry(client, keys, lfw_dir, monkeypatch)
    finally:
        _release(handler)
    assert any("identity.api.access" in line for line in lines)
    for needle in names:
        assert not [line for line in lines if needle in line], needle
    assert any("pending erasure failed again at its uploads step" in line for line in lines), lines


def _enroll_and_erase(client: TestClient, keys: dict[str, str], lfw: Path) -> list[str]:
    """Two people enrolled with a photo each, one erased over the API and one over the UI; their ids and names."""
    names: list[str] = []
    for external, person in (("Ext-Alpha-7", "Al_Gore"), ("Ext-Beta-9", "Aaron_Peirsol")):
        made = client.post(
            "/v1/persons",
            json={"external_id": external, "display_name": f"Name {person}"},
            headers=bearer(keys["admin"]),
        )
        assert made.status_code == 201, made.text
        photo = lfw / person / f"{person}_0001.jpg"
        added = client.post(
            f"/v1/persons/{external}/faces",
            files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))],
            headers=bearer(keys["admin"]),
        )
        assert added.status_code == 200, added.text
        client.post(
            f"/v1/persons/{external}/merge", json={"absorb": "nobody-like-this"}, headers=bearer(keys["search"])
        )
        names += [external, f"Name {person}", made.json()["id"]]
    assert client.delete("/v1/persons/Ext-Alpha-7", headers=bearer(keys["admin"])).status_code == 200
    sign_in(client, keys["admin"])
    client.get("/ui/persons/Ext-Beta-9")
    erased = client.post(
        "/ui/persons/Ext-Beta-9/erase",
        data={"confirm": "Ext-Beta-9", "csrf": csrf_of(client, "/ui/persons/Ext-Beta-9")},
        follow_redirects=False,
    )
    assert erased.status_code == 303 and "Ext-Beta" not in erased.headers["location"]
    assert client.get(erased.headers["location"]).status_code == 200
    return names


def _erase_with_a_retry(client: TestClient, keys: dict[str, str], lfw: Path, monkeypatch) -> list[str]:
    """A person whose erasure stops at its uploads step, retried by the server's background round (which logs
    that it failed again), then finished."""
    from identity.services.curation import erasure

    made = client.post(
        "/v1/persons", json={"external_id": "Ext-Gamma-3", "display_name": "Name Gamma"}, headers=bearer(keys["admin"])
    ).json()
    photo = lfw / "Alejandro_Toledo" / "Alejandro_Toledo_0001.jpg"
    client.post(
        "/v1/persons/Ext-Gamma-3/faces",
        files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))],
        headers=bearer(keys["admin"]),
    )

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device: '/data/uploads/Ext-Gamma-3.jpg'")

    dep = client.app.state.ctx.deployment()
    with monkeypatch.context() as patch:
        patch.setattr(erasure, "_apply_uploads", disk_full)
        assert client.delete("/v1/persons/Ext-Gamma-3", headers=bearer(keys["admin"])).status_code >= 400
        erasure.retry_pending(dep.app)  # what the server's background runner does each round
    erasure.retry_pending(dep.app)
    return ["Ext-Gamma-3", "Name Gamma", made["id"]]


def _capture(lines: list[str]) -> logging.Handler:
    """Every record of every logger at DEBUG, formatted as `identity serve` writes them."""

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith("httpx"):  # the test's own HTTP client, not the server
                lines.append(self.format(record))

    handler = Lines(logging.DEBUG)
    handler.addFilter(WithRequestId())
    handler.setFormatter(RedactingFormatter(LOG_CONFIG["formatters"]["plain"]["format"]))
    root = logging.getLogger()
    root.addHandler(handler)
    handler.restore = root.level  # type: ignore[attr-defined]
    root.setLevel(logging.DEBUG)
    return handler


def _release(handler: logging.Handler) -> None:
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(handler.restore)  # type: ignore[attr-defined]


# the real server: --proxy-headers, uvicorn's access log replaced -------------------------------------------


def test_identity_serve_behind_a_proxy_sets_secure_cookies_and_logs_templates_with_request_ids(clean_env) -> None:
    import socket

    import httpx

    exe = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "identity"
    made = subprocess.run(
        [str(exe), "keys", "create", "ops", "--role", "admin", "--json"], capture_output=True, text=True, timeout=120
    )
    key = json.loads(made.stdout)["key"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server)
        login = httpx.post(f"{base}/ui/login", data={"key": key}, headers={"X-Forwarded-Proto": "https"})
        assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower()
        missing = httpx.get(
            f"{base}/v1/persons/Secret-Person-1?q=Hidden-Name",
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-777"},
        )
        assert missing.status_code == 404 and missing.headers["x-request-id"] == "req-777"
    finally:
        server.terminate()
        log = server.communicate(timeout=60)[1]
    assert "Secret-Person" not in log and "Hidden-Name" not in log, log
    assert re.search(r"\[req-777\] .*GET /v1/persons/\{person\} 404", log), log


def _wait_until_up(base: str, server: subprocess.Popen) -> None:
    import httpx

    for _ in range(240):
        assert server.poll() is None, server.communicate()[1]
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.25)
    raise AssertionError("the server did not start")
