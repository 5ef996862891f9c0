"""The review web UI: server-rendered pages (Jinja2, autoescaped, no JavaScript) over the same services.

Sign in with an API key; the session is a row in SQL named by a signed, HttpOnly, SameSite cookie
(identity.api.session), and every form that changes data carries the session's CSRF token. What a page offers
follows the key's role, and every action is checked again on the server.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import shutil
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
from identity.api.errors import ApiError, status_of
from identity.api.flash import flash_message, flashed
from identity.api.limits import Deadline, deadline_of
from identity.api.session import COOKIE, MAX_AGE_S
from identity.api.uploads import save_uploads
from identity.errors import IdentityError
from identity.faces import load_image
from identity.render.audit_html import face_thumbnails
from identity.serialize import to_json
from identity.services.access.keys import ADMIN, ENROLL, READ, SEARCH, Forbidden, KeyRecord
from identity.services.access.sessions import OpenSession
from identity.services.curation.edits import delete_face, delete_person, merge_persons, move_face
from identity.services.enrollment.inputs import from_files
from identity.services.enrollment.run import enroll
from identity.services.enrollment.uploads import new_upload_folder
from identity.services.paging import encode_cursor
from identity.services.records.audit import audit_person
from identity.services.records.persons import add_person, list_people, show_person
from identity.services.records.thumbnails import data_uri, search_thumbnails
from identity.services.review.matches import review_match
from identity.services.search.identify import SearchFailure, SearchOptions
from identity.services.search.log import list_searches, show_search

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
)
PHOTO_PX = 800  # the searched photo is shown at most this wide or high
CROP_PX = 112  # a searched face's crop beside its result
CROP_MARGIN = 0.15  # context around the face box in its crop, as a share of the box
MAX_ENROLL_PHOTOS = 10  # as POST /v1/persons/{p}/faces: more belong in a queued enrollment
log = logging.getLogger("identity.api.ui")


class SignIn(Exception):
    """No valid session: the browser goes to the sign-in page."""


@dataclasses.dataclass(frozen=True)
class Visitor:
    key: KeyRecord
    session: OpenSession

    def page(self, **values: Any) -> dict[str, Any]:
        return {"user": self.key, "csrf": self.session.csrf, "nav": navigation(self.key), **values}


# The pages in the navigation, and the permission each needs: a key sees only those its role may use.
NAV: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/ui/search", "Search", (SEARCH,)),
    ("/ui/enroll", "Enroll", (ENROLL,)),
    ("/ui/persons", "Persons", (READ,)),
    ("/ui/searches", "Search log", (READ,)),
    ("/ui/reviews", "Review", (READ,)),
    ("/ui/clusters", "Clusters", (READ, ENROLL)),
)


def navigation(key: KeyRecord) -> list[tuple[str, str]]:
    return [(href, label) for href, label, needs in NAV if any(key.allows(p) for p in needs)]


def landing(key: KeyRecord) -> str:
    """Where a key lands after sign-in: the page its role is for (an admin's: the persons)."""
    if key.allows(ADMIN):
        return "/ui/persons"
    for permission, page in ((SEARCH, "/ui/search"), (ENROLL, "/ui/enroll"), (READ, "/ui/reviews")):
        if key.allows(permission):
            return page
    return "/ui/login"  # a role with no page (none today)


def visitor(request: Request) -> Visitor:
    ctx: ApiContext = request.app.state.ctx
    session = ctx.sessions.read(ctx.core, request.cookies.get(COOKIE))
    if session is None:  # none, signed out, expired, or its key revoked or expired
        raise SignIn()
    return Visitor(session.key, session)


def allowed(who: Visitor, *permissions: str) -> Visitor:
    """`who`, when their key has one of `permissions`."""
    if not any(who.key.allows(p) for p in permissions):
        needed = " or ".join(permissions)
        raise Forbidden(f"the key {who.key.name!r} (role {who.key.role}) may not do this ({needed} needed)")
    return who


def checked(who: Visitor, csrf: str) -> None:
    """A form that changes data must send back the session's token (a page of another site cannot)."""
    if csrf != who.session.csrf:
        raise ApiError(403, "the form's CSRF token does not match this session: reload the page and try again")


def render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, values, status_code=status)


@router.get("", response_class=HTMLResponse)
def home(who: Visitor = Depends(visitor)) -> Response:
    return RedirectResponse(landing(who.key), status_code=303)


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
    response = RedirectResponse(landing(record), status_code=303)
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
        photo = await run_in_threadpool(_photo, path, [f["bbox"] for f in result["faces"]])
    best = [c["faces"][0]["face_id"] for f in result["faces"] for c in f["candidates"] if c["faces"]]
    thumbs = await run_in_threadpool(face_thumbnails, ctx.core, best)
    persons = await run_in_threadpool(lambda: ctx.deployment().gallery_persons())
    near = ctx.settings.review.near_threshold
    return render(
        request,
        "search.html",
        {
            **values,
            "result": result,
            "photo": photo,
            "thumbs": thumbs,
            "near": {f["face_index"]: _near(f, result["threshold"], near) for f in result["faces"]},
            "explained": threshold_sentence(result, persons),
            "reviewer": who.key.allows(READ),
        },
    )


@dataclasses.dataclass(frozen=True)
class Box:
    """A face's box and label on the shown photo, in its pixels (the SVG's viewBox is the shown size)."""

    x: float
    y: float
    width: float
    height: float
    label_y: float  # the label's baseline: above the box, or inside it at the photo's top edge


@dataclasses.dataclass(frozen=True)
class ShownPhoto:
    uri: str  # JPEG data URI, upright, at most PHOTO_PX
    width: int
    height: int
    boxes: list[Box]
    crops: list[str]  # each face's crop (data URI), by face index
    font: float  # label size and stroke, relative to the shown size so they read alike on any photo
    stroke: float


def _photo(path: Path, bboxes: list[list[float]]) -> ShownPhoto:
    """The searched photo as the pipeline decoded it (upright: load_image applies the EXIF orientation, as the
    boxes assume), scaled to at most PHOTO_PX and re-encoded as JPEG (a HEIC or AVIF is not shown by every
    browser), with each face's box, label place and crop."""
    picture = PILImage.fromarray(load_image(path).rgb)
    crops = [_crop(picture, bbox) for bbox in bboxes]
    scale = min(1.0, PHOTO_PX / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
    font = max(14.0, round(picture.width / 40))
    boxes = []
    for x1, y1, x2, y2 in bboxes:
        top = y1 * scale
        boxes.append(
            Box(x1 * scale, top, (x2 - x1) * scale, (y2 - y1) * scale, top - 4 if top > font + 6 else top + font)
        )
    return ShownPhoto(_jpeg_uri(picture), picture.width, picture.height, boxes, crops, font, max(2.0, font / 6))


def _crop(picture: PILImage.Image, bbox: list[float]) -> str:
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    box = (
        max(0, int(x1 - mx)),
        max(0, int(y1 - my)),
        min(picture.width, int(x2 + mx)),
        min(picture.height, int(y2 + my)),
    )
    crop = picture.crop(box) if box[2] > box[0] and box[3] > box[1] else PILImage.new("RGB", (1, 1))
    crop.thumbnail((CROP_PX, CROP_PX))
    return _jpeg_uri(crop)


def _jpeg_uri(picture: PILImage.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue())


def _near(face: dict[str, Any], threshold: float, near: float) -> bool:
    """An `unknown` whose decision score came within `near` below the threshold: a reviewer should look."""
    score = face.get("decision_score")
    return face["decision"] == "unknown" and score is not None and threshold - near <= score < threshold


def threshold_sentence(result: dict[str, Any], persons: int) -> str:
    """What the threshold means for this gallery, in one sentence."""
    value, fpir, source = result["threshold"], result.get("threshold_fpir"), _measured(result["threshold_source"])
    gallery = f"this gallery has {persons:,} enrolled person{'s' if persons != 1 else ''}"
    if result["threshold_source"] == "command line":
        return (
            f"A match needs a decision score of at least {value:.3f}, the threshold given for this search; {gallery}."
        )
    if fpir:
        calibrated = result.get("threshold_gallery_persons")
        among = f" among {calibrated:,} enrolled persons" if calibrated else ""
        return (
            f"A match needs a decision score of at least {value:.3f}: set so that about 1 in {round(1 / fpir):,} "
            f"searches for people who are not enrolled would wrongly match someone{among} ({source}); {gallery}."
        )
    return (
        f"A match needs a similarity of at least {value:.3f} to the best candidate ({source}); {gallery}, and the "
        "more persons, the more often a stranger comes close to one of them by chance."
    )


def _measured(source: str) -> str:
    """A threshold's source in words: "pack default (FPIR 0.01 on lfw-dev, ...)" reads "the model pack's default,
    measured on lfw-dev, ..." (the rate is said in the sentence already)."""
    if source.startswith("pack default (") and source.endswith(")"):
        return "the model pack's default, measured on " + re.sub(r"^F[AP]IR \S+ on ", "", source[14:-1])
    return re.sub(r"^calibrated at F[AP]IR \S+ on ", "calibrated on ", source)


@router.post("/search/review")
def review_from_search(
    search_id: Annotated[str, Form()],
    face_index: Annotated[int, Form()],
    verdict: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    """Confirm or reject a face's first candidate right from the result; then to that search as the log holds it."""
    checked(allowed(who, READ), csrf)
    done = review_match(ctx.core, search_id, face_index, verdict, actor=who.key.name)
    return RedirectResponse(flashed(f"/ui/searches/{done.search_id}", done.verdict), status_code=303)


@router.get("/searches/{search_id}", response_class=HTMLResponse)
def logged_search(
    request: Request, search_id: str, flash: str | None = None, ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)
) -> HTMLResponse:
    allowed(who, READ)
    detail = show_search(ctx.core, search_id)
    kept = search_thumbnails(ctx.core, [(detail.search.search_id, f.face_index) for f in detail.faces])
    crops = {index: data_uri(jpeg) for (_, index), jpeg in kept.items()}
    return render(
        request,
        "search_log_entry.html",
        who.page(search=to_json(detail.search), faces=to_json(detail.faces), crops=crops, flash=flash_message(flash)),
    )


@router.get("/enroll", response_class=HTMLResponse)
def enroll_page(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:
    return render(request, "enroll.html", allowed(who, ENROLL).page(mode="new"))


@router.post("/enroll", response_class=HTMLResponse)
async def enroll_photos(
    request: Request,
    image: Annotated[list[UploadFile], File()],
    external_id: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    mode: Annotated[str, Form()] = "new",
    display_name: Annotated[str, Form()] = "",
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> HTMLResponse:
    """Photos of a new person (created first, with the display name) or an enrolled one, through the enrollment
    service POST /v1/persons/{p}/faces runs; the page lists each photo's outcome."""
    from starlette.concurrency import run_in_threadpool

    checked(allowed(who, ENROLL), csrf)
    person = external_id.strip()
    values = who.page(mode=mode, external_id=person, display_name=display_name.strip())
    if len(image) > MAX_ENROLL_PHOTOS:
        error = f"{len(image)} photos: at most {MAX_ENROLL_PHOTOS} at a time here"
        return render(request, "enroll.html", {**values, "error": error}, status=422)
    try:
        if mode == "new":
            await run_in_threadpool(add_person, ctx.core, person, display_name.strip() or None)
        else:
            person = (await run_in_threadpool(show_person, ctx.core, person)).external_id
    except IdentityError as exc:  # already enrolled, or no such person
        return render(request, "enroll.html", {**values, "error": exc.message}, status=status_of(exc))
    folder = new_upload_folder(ctx.settings)  # kept: they are the enrolled photos (erasure deletes them)
    try:
        saved = await save_uploads(image, folder, ctx.max_upload_bytes)
        await run_in_threadpool(check_pixels, [path for _, path in saved], ctx.settings.api)
        run = await run_in_threadpool(
            lambda: enroll(ctx.core, from_files(person, [p for _, p in saved]), analyse=ctx.inference.analyse)
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    names = {str(path.resolve()): name for name, path in saved}
    outcomes = [
        {"image": names.get(r.source_path, Path(r.source_path).name), "outcome": r.outcome, "reason": r.reason}
        for r in run.summary.results
    ]
    enrolled = await run_in_threadpool(show_person, ctx.core, person)
    return render(
        request, "enroll.html", {**values, "mode": "existing", "outcomes": outcomes, "person": to_json(enrolled)}
    )


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
    confirm: Annotated[bool, Form()] = False,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ADMIN), csrf)
    if not confirm:  # the form's checkbox: a face's deletion cannot be undone
        raise ApiError(422, f'face {face} was not deleted: tick "I confirm" beside Delete face to delete it')
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
