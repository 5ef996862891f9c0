"""Rows of benchmarks/http_abuse.py for issue 22's items 4-7 and 9-15: sessions, headers, flash, file modes,
logs, throttling, literal q, uuid routes, OpenAPI, shapes, login CSRF, CORS and request ids.

Each row is a function `(Run) -> str` registered with http_abuse's `@case`, with `before`: what main
answered before issue 22, as the issue's text measured it. Requests go to 127.0.0.1 only, every loop
is bounded, and the harness stops the server after each row.
"""

from __future__ import annotations

import http.client
import json
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from http_abuse import Run

Answer = tuple[int, dict[str, str], str]
SNAPSHOT = Path(__file__).resolve().parent.parent / "tests" / "openapi.json"


# ---- requests -------------------------------------------------------------------------------


def call(
    run: Run, method: str, path: str, role: str | None = None, body: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    """One request: (status, headers with lower-case names, body text). A dict body is JSON, a str a form."""
    sent = dict(headers or {})
    if role:
        sent["Authorization"] = f"Bearer {run.keys[role]}"
    data = None
    if isinstance(body, dict):
        data, sent["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        data, sent["Content-Type"] = body.encode(), "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=60)
    try:
        conn.request(method, path, body=data, headers=sent)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read().decode("utf-8", "replace")
    finally:
        conn.close()


def sign_in(run: Run, key: str) -> str:
    """The UI's session cookie (name=value) for a key, signed in as the login form does."""
    status, headers, _ = call(run, "POST", "/ui/login", body=urlencode({"key": key}))
    if status != 303:
        raise SystemExit(f"sign-in answered {status}")
    return headers["set-cookie"].split(";", 1)[0]


def page(run: Run, path: str, cookie: str) -> Answer:
    return call(run, "GET", path, headers={"Cookie": cookie})


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    return found.group(1) if found else ""


def outcome(status: int, headers: dict[str, str]) -> str:
    """A UI answer in words: 200, or where a redirect goes."""
    return f"{status} -> {headers['location']}" if "location" in headers else str(status)


def person(run: Run, external_id: str, name: str | None = None) -> dict[str, Any]:
    status, _, text = call(run, "POST", "/v1/persons", "admin", {"external_id": external_id, "display_name": name})
    if status != 201:
        raise SystemExit(f"POST /v1/persons answered {status}: {text[:200]}")
    return json.loads(text)


# ---- the rows ----------------------------------------------------------------------------------


def register_items(case: Callable[..., Callable[[Callable[[Run], str]], Callable[[Run], str]]]) -> None:
    """Register every row of this module with http_abuse's `case` decorator, in item order."""
    for item, name, before, env, fn in ROWS:
        case(item, name, before=before, **env)(fn)


def cookie_after_sign_out(run: Run) -> str:
    cookie = sign_in(run, run.keys["admin"])
    _, _, text = page(run, "/ui/persons", cookie)
    copy = cookie  # what a second tab, or whoever copied it, keeps
    status, headers, _ = call(
        run, "POST", "/ui/logout", body=urlencode({"csrf": csrf_of(text)}), headers={"Cookie": cookie}
    )
    reused, reused_headers, _ = page(run, "/ui/persons", copy)
    run.row.status = outcome(reused, reused_headers)
    return f"sign-out {outcome(status, headers)}; the copied cookie afterwards: {outcome(reused, reused_headers)}"


def cookie_after_revocation(run: Run) -> str:
    _, _, text = call(run, "POST", "/v1/keys", "admin", {"name": "abuse-revoked", "role": "admin"})
    cookie = sign_in(run, json.loads(text)["key"])
    first, first_headers, _ = page(run, "/ui/persons", cookie)
    revoked, _, _ = call(run, "DELETE", "/v1/keys/abuse-revoked", "admin")
    status, headers, _ = page(run, "/ui/persons", cookie)
    run.row.status = outcome(status, headers)
    return (
        f"before revocation {outcome(first, first_headers)}; DELETE /v1/keys {revoked}; then {outcome(status, headers)}"
    )


def security_headers(run: Run) -> str:
    cookie = sign_in(run, run.keys["admin"])
    status, headers, _ = page(run, "/ui/persons", cookie)
    _, api, _ = call(run, "GET", "/v1/persons", "admin")
    run.row.status = str(status)
    csp = headers.get("content-security-policy", "")
    frame = re.search(r"frame-ancestors [^;]+", csp)
    return (
        f"/ui/persons: CSP {'set' if csp else 'absent'} ({frame.group(0) if frame else 'no frame-ancestors'}"
        f"{', inline script allowed' if 'unsafe-inline' in csp else ', no inline'}), "
        f"X-Frame-Options {headers.get('x-frame-options')}, Cache-Control {headers.get('cache-control')}; "
        f"/v1/persons Cache-Control {api.get('cache-control')}"
    )


def flash_text(run: Run) -> str:
    cookie = sign_in(run, run.keys["admin"])
    text = "Your session expired. Sign in again at http://evil.example"
    status, _, body = page(run, "/ui/persons?" + urlencode({"flash": text}), cookie)
    coded, _, coded_body = page(run, "/ui/persons?flash=erased", cookie)
    run.row.status = str(status)
    return (
        f"the text shown: {'yes' if 'evil.example' in body else 'no'}; "
        f"?flash=erased ({coded}) shows its own message: {'yes' if 'erased' in coded_body.lower() else 'no'}"
    )


def file_modes(run: Run) -> str:
    """After a run that wrote: a person, an upload, a search. Every file 0600, every folder 0700?"""
    person(run, "modes-check")
    call(run, "GET", "/v1/persons", "admin")
    files, folders, wide = 0, 0, []
    for path in [run.data, *run.data.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            folders += 1
            wide += [f"{path.relative_to(run.data)}/ {mode:o}"] if mode != 0o700 else []
        elif path.is_file():
            files += 1
            wide += [f"{path.relative_to(run.data)} {mode:o}"] if mode != 0o600 else []
    run.row.status = "200"
    return f"{files} files, {folders} folders; wider than 0600/0700: {len(wide)} {', '.join(wide[:3])}".strip()


def erased_in_logs(run: Run) -> str:
    """Erase one person by API (after a read, a merge and a 403) and one by UI, then grep the server's log."""
    api = person(run, "erase-api-ext-9", "Erasable Api Nine")
    ui = person(run, "erase-ui-ext-9", "Erasable Ui Nine")
    merged = person(run, "erase-merged-ext-9", "Erasable Merged Nine")
    call(run, "GET", f"/v1/persons/{api['external_id']}", "admin")
    call(run, "POST", f"/v1/persons/{api['external_id']}/merge", "admin", {"absorb": merged["external_id"]})
    call(run, "GET", f"/v1/persons/{api['external_id']}", "search")  # a 403 logs its route
    erased_api, _, _ = call(run, "DELETE", f"/v1/persons/{api['id']}", "admin")
    cookie = sign_in(run, run.keys["admin"])
    _, _, form = page(run, f"/ui/persons/{ui['id']}/erase", cookie)
    erased_ui, headers, _ = call(
        run,
        "POST",
        f"/ui/persons/{ui['id']}/erase",
        headers={"Cookie": cookie},
        body=urlencode({"confirm": ui["external_id"], "csrf": csrf_of(form)}),
    )
    call(run, "GET", f"/v1/persons/{api['external_id']}", "admin")  # 404 for the erased one
    time.sleep(0.3)  # the server's last lines reach the file
    lines = run.log.read_text(errors="replace").splitlines()
    secrets = [p[k] for p in (api, ui, merged) for k in ("external_id", "display_name", "id")]
    found = sum(line.count(s) for line in lines for s in secrets)
    in_request = [line for line in lines if "identity.api" in line]
    with_id = [line for line in in_request if re.search(r" \[[A-Za-z0-9._:-]{1,64}\] ", line) and " [-] " not in line]
    run.row.status = f"{erased_api},{outcome(erased_ui, headers)}"
    return (
        f"{len(lines)} log lines; erased ids/names/uuids found: {found}; "
        f"request lines with a request id: {len(with_id)} of {len(in_request)}"
    )


def wrong_secrets(run: Run) -> str:
    key_id = run.keys["search"].split("_")[1]
    statuses, started = [], time.perf_counter()
    for n in range(60):
        status, _, _ = call(run, "GET", "/v1/searches", headers={"Authorization": f"Bearer idk_{key_id}_wrong{n}"})
        statuses.append(status)
    seconds = time.perf_counter() - started
    right, headers, _ = call(run, "GET", "/v1/searches", "search")
    first = statuses.index(429) if 429 in statuses else len(statuses)
    run.row.status = f"{statuses.count(401)}x401,{statuses.count(429)}x429"
    return (
        f"{first} x 401 before the first 429, 60 tries in {seconds:.2f} s; the right key then: {right} "
        f"(Retry-After {headers.get('retry-after')})"
    )


def literal_q(run: Run) -> str:
    for external_id in ("alpha1", "beta2", "gamma3"):
        person(run, external_id)
    _, _, everyone = call(run, "GET", "/v1/persons", "admin")
    status, _, text = call(run, "GET", "/v1/persons?q=_", "admin")
    _, _, percent = call(run, "GET", "/v1/persons?q=%25", "admin")
    ids = [p["external_id"] for p in json.loads(text)["items"]]
    run.row.status = str(status)
    return (
        f"{json.loads(everyone)['total']} people; q=_ -> {len(ids)} ({', '.join(ids)}: those with `_` in their id); "
        f"q=% -> {json.loads(percent)['total']}"
    )


def slash_id(run: Run) -> str:
    made = person(run, "dept/alice", "Alice")
    found, _, text = call(run, "GET", "/v1/persons?" + urlencode({"external_id": "dept/alice"}), "admin")
    by_uuid, _, one = call(run, "GET", f"/v1/persons/{made['id']}", "admin")
    encoded, _, _ = call(run, "GET", f"/v1/persons/{quote('dept/alice', safe='')}", "admin")
    cookie = sign_in(run, run.keys["admin"])
    ui, _, _ = page(run, f"/ui/persons/{made['id']}", cookie)
    run.row.status = f"{found},{by_uuid}"
    return (
        f"?external_id=dept/alice -> {found}, {len(json.loads(text))} found; its uuid route -> {by_uuid} "
        f"({json.loads(one)['external_id']}); UI page by uuid {ui}; /v1/persons/dept%2Falice still {encoded}"
    )


def docs_offline(run: Run) -> str:
    status, _, html = call(run, "GET", "/docs")
    external = sorted(set(re.findall(r"https?://[^\"' )]+", html)) - {f"http://127.0.0.1:{run.port}"})
    _, _, schema = call(run, "GET", "/openapi.json")
    served = operation_ids(json.loads(schema))
    committed = operation_ids(json.loads(SNAPSHOT.read_text()))
    run.row.status = str(status)
    return (
        f"/docs external URLs: {len(external)} {' '.join(external[:2])}; {len(served)} operationIds "
        f"({', '.join(served[:3])}, ...), {'same as' if served == committed else 'DIFFERENT from'} tests/openapi.json"
    )


def operation_ids(schema: dict[str, Any]) -> list[str]:
    return sorted(op["operationId"] for ops in schema["paths"].values() for op in ops.values() if "operationId" in op)


def shapes(run: Run) -> str:
    made = person(run, "shape-check", "Shape")
    _, _, read = call(run, "GET", f"/v1/persons/{made['id']}", "admin")
    status, _, patched = call(run, "PATCH", f"/v1/persons/{made['id']}", "admin", {"display_name": "Shape 2"})
    run.row.status = str(status)
    return (
        f"created_at on create {made['created_at']}, on read {json.loads(read)['created_at']}; "
        f"PATCH faces {json.loads(patched)['faces']!r}"
    )


def cross_site(run: Run) -> str:
    status, _, _ = call(
        run, "POST", "/ui/login", body=urlencode({"key": run.keys["admin"]}), headers={"Origin": "https://evil.example"}
    )
    fetch, _, _ = call(
        run, "POST", "/ui/login", body=urlencode({"key": run.keys["admin"]}), headers={"Sec-Fetch-Site": "cross-site"}
    )
    run.row.status = f"{status},{fetch}"
    return f"login POST with Origin https://evil.example -> {status}; with Sec-Fetch-Site: cross-site -> {fetch}"


def preflight(run: Run) -> str:
    status, headers, _ = call(
        run,
        "OPTIONS",
        "/v1/search",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    _, answer, _ = call(run, "GET", "/healthz", headers={"X-Request-ID": "abuse-check-15"})
    _, fresh, _ = call(run, "GET", "/healthz", headers={"X-Request-ID": "bad id with spaces"})
    run.row.status = str(status)
    return (
        f"preflight {status}, Allow-Origin {headers.get('access-control-allow-origin')}; X-Request-ID echoed "
        f"{answer.get('x-request-id')}, an unsafe one replaced by {fresh.get('x-request-id')}"
    )


ROWS: list[tuple[str, str, str, dict[str, str], Callable[[Run], str]]] = [
    ("4", "UI cookie copied before sign-out, used after", "200 for 12 h", {}, cookie_after_sign_out),
    ("4", "UI cookie of a key, used after the key's revocation", "ended", {}, cookie_after_revocation),
    ("5", "security headers of a page and an API answer", "no CSP, framable, cacheable", {}, security_headers),
    ("6", "/ui/persons?flash=<a phishing sentence>", "text shown in the banner", {}, flash_text),
    ("7", "modes of the data dir's files after a run", "0644 files, 0755 folders", {}, file_modes),
    (
        "9",
        "erase one person by API, one by UI; grep the server log",
        "ids in access lines, no request id",
        {},
        erased_in_logs,
    ),
    ("10", "60 wrong secrets for a real key id", "60 x 401 in 1.2 s", {}, wrong_secrets),
    ("11", "GET /v1/persons?q=_", "everyone", {}, literal_q),
    ("12", "external id dept/alice: ?external_id= and its uuid route", "dept%2Falice 404", {}, slash_id),
    ("13", "/docs offline, operationIds stable", "CDN, search_v1_search_post", {}, docs_offline),
    ("14", "created_at on create and read, PATCH faces", "no zone on read, faces null", {}, shapes),
    ("15", "cross-site login POST", "accepted", {}, cross_site),
    ("15", "CORS preflight by default, X-Request-ID", "405, no request id", {}, preflight),
    (
        "15",
        "CORS preflight, IDENTITY_API__CORS_ORIGINS=https://app.example",
        "no setting (405)",
        {"identity_api__cors_origins": "https://app.example"},
        preflight,
    ),
]
