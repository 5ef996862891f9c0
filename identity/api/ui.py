"""The review web UI: server-rendered pages (Jinja2, autoescaped, no JavaScript) over the same services.

Sign in with an API key; the session is a row in SQL named by a signed, HttpOnly, SameSite cookie
(identity.api.session), and every form that changes data carries the session's CSRF token. What a page offers
follows the key's role, and every action is checked again on the server.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from PIL import Image as PILImage

from identity.api.auth import identify
from identity.api.budget import check_pixels
from identity.api.context import ApiContext, Ctx
from identity.api.errors import ApiError
from identity.api.flash import flash_message, flashed
from identity.api.limits import Deadline, deadline_of
from identity.api.session import COOKIE, MAX_AGE_S
from identity.api.uploads import save_uploads
from identity.errors import IdentityError
from identity.faces import load_image
from identity.render.audit_html import face_thumbnails
from identity.serialize import to_json
from identity.services.access.keys import ADMIN, READ, SEARCH, Forbidden, KeyRecord
from identity.services.access.sessions import OpenSession
from identity.services.curation.edits import delete_face, delete_person, merge_persons, move_face
from identity.services.paging import encode_cursor
from identity.services.records.audit import audit_person
from identity.services.records.persons import list_people, show_person
from identity.services.search.identify import SearchFailure, SearchOptions
from identity.services.search.log import list_searches

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
)
PHOTO_PX = 800  # the searched photo is shown at most this wide or high
log = logging.getLogger("identity.api.ui")


class SignIn(Exception):
    """No valid session: the browser goes to the sign-in page."""


@dataclasses.dataclass(frozen=True)
class Visitor:
    key: KeyRecord
    session: OpenSession

    def page(self, **values: Any) -> dict[str, Any]:
        return {"user": self.key, "csrf": self.session.csrf, **values}


def visitor(request: Request) -> Visitor:
    ctx: ApiContext = request.app.state.ctx
    session = ctx.sessions.read(ctx.core, request.cookies.get(COOKIE))
    if session is None:  # none, signed out, expired, or its key revoked or expired
        raise SignIn()
    return Visitor(session.key, session)


def allowed(who: Visitor, permission: str) -> Visitor:
    if not who.key.allows(permission):
        raise Forbidden(f"the key {who.key.name!r} (role {who.key.role}) may not do this ({permission} needed)")
    return who


def checked(who: Visitor, csrf: str) -> None:
    """A form that changes data must send back the session's token (a page of another site cannot)."""
    if csrf != who.session.csrf:
        raise ApiError(403, "the form's CSRF token does not match this session: reload the page and try again")


def render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, values, status_code=status)


@router.get("", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/ui/search", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", {})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, key: Annotated[str, Form()], ctx: ApiContext = Ctx) -> Response:
    if not same_origin(request):  # login CSRF: another site must not sign a browser in with its own key
        return render(request, "login.html", {"error": "sign in from this server's own page"}, status=403)
    try:
        record = identify(ctx, key.strip(), request.client.host if request.client else None)
    except ApiError as exc:  # throttled
        return templates.TemplateResponse(
            request, "login.html", {"error": exc.error}, status_code=exc.status, headers=exc.headers
        )
    except IdentityError as exc:
        log.warning("401 POST /ui/login: %s", exc.message)  # the reason, never the key
        return render(request, "login.html", {"error": exc.message}, status=401)
    ctx.sessions.end(ctx.core, request.cookies.get(COOKIE))  # a session held before sign-in is not reused
    _, cookie = ctx.sessions.issue(ctx.core, record.key_id)
    response = RedirectResponse("/ui/search" if record.allows(SEARCH) else "/ui/persons", status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=ctx.sessions.secure(request),
        path="/ui",
    )
    return response


def same_origin(request: Request) -> bool:
    """A form POST from a page of this server: refused when the browser says it came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:  # a browser's own word, when it gives one
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


@router.post("/logout")
def logout(
    request: Request, csrf: Annotated[str, Form()], ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)
) -> Response:
    checked(who, csrf)
    ctx.sessions.end(ctx.core, request.cookies.get(COOKIE))  # a copy of the cookie is refused from now on
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:
    return render(request, "search.html", allowed(who, SEARCH).page(top_k=5))


@router.post("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    image: Annotated[UploadFile, File()],
    csrf: Annotated[str, Form()],
    top_k: Annotated[int, Form(ge=1, le=20)] = 5,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
    deadline: Deadline = Depends(deadline_of),
) -> HTMLResponse:
    from starlette.concurrency import run_in_threadpool

    allowed(who, SEARCH)
    checked(who, csrf)
    values = who.page(top_k=top_k)
    with tempfile.TemporaryDirectory(prefix="identity-ui-") as tmp:
        [(name, path)] = await save_uploads([image], Path(tmp), ctx.max_upload_bytes)
        await run_in_threadpool(check_pixels, [path], ctx.settings.api)  # the API's limits (one image here)
        [analysed] = await run_in_threadpool(ctx.analyse, [path], False, lambda: deadline.check("analysing the images"))
        options = SearchOptions(top_k=top_k, actor=who.key.name)
        deadline.check("searching the faces")
        found = await run_in_threadpool(ctx.search, path, analysed, name, options)
        if isinstance(found, SearchFailure):
            return render(request, "search.html", {**values, "error": found.error}, status=422)
        result = to_json(found)
        photo, width, height, scale = _photo(path)
    best = [c["faces"][0]["face_id"] for f in result["faces"] for c in f["candidates"] if c["faces"]]
    thumbs = await run_in_threadpool(face_thumbnails, ctx.core, best)
    return render(
        request,
        "search.html",
        {
            **values,
            "result": result,
            "photo": photo,
            "width": width,
            "height": height,
            "scale": scale,
            "thumbs": thumbs,
        },
    )


def _photo(path: Path) -> tuple[str, int, int, float]:
    """The searched photo as a JPEG data URI at most PHOTO_PX, its size, and the scale of its boxes.

    Decoded as the pipeline decodes it: upright, as the boxes are, and as a JPEG even when the upload
    was a HEIC or AVIF, which browsers cannot all show.
    """
    picture = PILImage.fromarray(load_image(path).rgb)
    scale = min(1.0, PHOTO_PX / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return uri, picture.width, picture.height, scale


@router.get("/persons", response_class=HTMLResponse)
def persons(
    request: Request,
    q: str | None = None,
    offset: int = 0,
    flash: str | None = None,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> HTMLResponse:
    allowed(who, READ)
    limit = 50
    people = [to_json(p) for p in list_people(ctx.core, q, limit, encode_cursor(max(offset, 0))).items]
    return render(
        request,
        "persons.html",
        who.page(persons=people, q=q, offset=max(offset, 0), limit=limit, flash=flash_message(flash)),
    )


@router.get("/persons/{person}", response_class=HTMLResponse)
def person(
    request: Request, person: str, flash: str | None = None, ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)
) -> HTMLResponse:
    allowed(who, READ)
    report = to_json(audit_person(ctx.core, person, who.key.name))
    thumbs = face_thumbnails(ctx.core, [f["face_id"] for f in report["faces"]])
    return render(
        request,
        "person.html",
        who.page(report=report, thumbs=thumbs, admin=who.key.allows(ADMIN), flash=flash_message(flash)),
    )


@router.post("/persons/{person}/merge")
def merge(
    person: str,
    absorb: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ADMIN), csrf)
    done = merge_persons(ctx.core, person, absorb, who.key.name)
    return _back(done.kept_id or done.kept, "merged", ctx)


@router.post("/faces/{face}/move")
def move(
    face: str,
    to: Annotated[str, Form()],
    back: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ADMIN), csrf)
    move_face(ctx.core, face, to, who.key.name)
    return _back(back, "face-moved", ctx)


@router.post("/faces/{face}/delete")
def remove_face(
    face: str,
    back: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ADMIN), csrf)
    delete_face(ctx.core, face, who.key.name)
    return _back(back, "face-deleted", ctx)


@router.get("/persons/{person}/erase", response_class=HTMLResponse)
def erase_page(request: Request, person: str, ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)) -> HTMLResponse:
    allowed(who, ADMIN)
    return render(request, "erase.html", who.page(person=to_json(show_person(ctx.core, person))))


@router.post("/persons/{person}/erase")
def erase(
    request: Request,
    person: str,
    confirm: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ADMIN), csrf)
    record = to_json(show_person(ctx.core, person))
    if confirm.strip() != record["external_id"]:
        return render(
            request,
            "erase.html",
            who.page(person=record, flash="the confirmation did not match: type the external id exactly"),
            status=422,
        )
    delete_person(ctx.core, person, who.key.name)
    return RedirectResponse(flashed("/ui/persons", "erased"), status_code=303)


@router.get("/searches", response_class=HTMLResponse)
def searches(
    request: Request,
    person: str | None = None,
    actor: str | None = None,
    decision: str | None = None,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> HTMLResponse:
    allowed(who, READ)
    rows = [
        to_json(s) for s in list_searches(ctx.core, person or None, None, 200, actor or None, decision or None).items
    ]
    return render(request, "searches.html", who.page(searches=rows, person=person, actor=actor, decision=decision))


def _back(person: str, code: str, ctx: ApiContext) -> Response:
    """To the person's page by uuid (an external id may hold `/`), with the banner `code`."""
    person_id = show_person(ctx.core, person).id
    return RedirectResponse(flashed(f"/ui/persons/{person_id}", code), status_code=303)


def ui_error(request: Request, status: int, error: str) -> Response:
    """Errors on UI pages as a page (the API's are JSON); no session: to the sign-in page."""
    return render(request, "error.html", {"status": status, "error": error}, status=status)
