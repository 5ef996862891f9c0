"""Reviewer effort and speed of the review page (/ui/reviews): actions and page loads per decision, and load time.

    .venv/bin/python benchmarks/review_actions.py [--pending 10000] [--decisions 50] [--database-url URL] [--json]

A temporary store gets four lfw-dev people enrolled (two photos each) and a few real searches of
their other photos; the search log rows of those searches (events, hits and searched-face
thumbnails) are then copied until `--pending` match decisions wait for review (and `--reviewed`
older ones have a review). `identity serve`'s
app runs on it in this process (uvicorn, one thread).

1. Load: p50/p95 of GET /ui/reviews (the first page: 20 cards with their thumbnails) and of
   GET /v1/reviews?unreviewed=true&decision=match, over `--loads` requests each, with every
   decision still pending (target: p95 < 300 ms at 10,000).
2. Effort, in Chromium (Playwright): `--decisions` decisions each by keyboard (the page's
   script: one key per card), by mouse with the script (a click on Confirm), and by mouse
   without JavaScript (a form POST and redirect per decision). Counts keys, clicks, scrolls a
   mouse user would need (the button outside the viewport before the click) and page loads.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from identity.app.core import App, open_deployment
from identity.config import Settings
from identity.services.access.keys import create_key
from identity.services.enrollment.inputs import from_directory
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue, queue_jobs
from identity.services.review.queue import review_queue
from identity.services.search.identify import SearchOptions, search_image
from identity.store.sql.db import transaction
from identity.store.sql.tables import MatchReview, SearchEvent, SearchHit, SearchThumbnail

LFW = Path("/work/shared/datasets/lfw-dev")
CHROMIUM = "/usr/bin/chromium"
PEOPLE = ("Al_Gore", "Alejandro_Toledo", "Tony_Blair", "Aaron_Peirsol")
SEARCHED = {"Al_Gore": (3, 4, 5), "Alejandro_Toledo": (3, 4), "Tony_Blair": (3, 4)}
CHUNK = 1000  # copied searches per transaction


def build(data_dir: Path, dataset: Path, database_url: str | None, pending: int, reviewed: int = 0) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=database_url, workers=1)
    root = data_dir.parent / "photos"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(dataset / person / f"{person}_{n:04d}.jpg", root / person)
    with open_deployment(settings) as dep:
        batch, _ = queue_jobs(dep.app, from_directory(root))
        process_queue(dep.app, EnrollmentWriter(dep), batch, 1)
        for person, numbers in SEARCHED.items():
            for n in numbers:
                search_image(dep.app, str(dataset / person / f"{person}_{n:04d}.jpg"), SearchOptions(actor="desk"))
        real = review_queue(dep.app, unreviewed=True, decision="match", limit=200).total
        copy_searches(dep.app, pending + reviewed - real)
        review_oldest(dep.app, reviewed)
        assert review_queue(dep.app, unreviewed=True, decision="match").total >= pending
    return settings


def review_oldest(app: App, count: int) -> None:
    """Confirm the `count` oldest match decisions (a queue with a history of reviews behind it)."""
    with transaction(app.sessions) as session:
        hits = session.execute(
            select(SearchHit.search_id, SearchHit.face_index, SearchHit.person_id)
            .join(SearchEvent, SearchHit.search_id == SearchEvent.id)
            .where(SearchHit.rank == 1, SearchHit.decision == "match")
            .order_by(SearchEvent.created_at)
            .limit(count)
        ).all()
        session.add_all(
            MatchReview(
                actor="earlier",
                search_id=h.search_id,
                face_index=h.face_index,
                person_id=h.person_id,
                verdict="confirmed",
            )
            for h in hits
        )


def copy_searches(app: App, wanted: int) -> None:
    """Copies of the logged match searches (new ids, each a second older than the last) until `wanted` more."""
    with app.sessions() as session:
        events = list(session.query(SearchEvent))
        hits = {e.id: list(session.query(SearchHit).filter(SearchHit.search_id == e.id)) for e in events}
        thumbs = {t.search_id: t for t in session.query(SearchThumbnail)}
    models = [e for e in events if any(h.rank == 1 and h.decision == "match" for h in hits[e.id])]
    oldest = min(e.created_at for e in events)
    made = 0
    while made < wanted:
        with transaction(app.sessions) as session:
            for _ in range(min(CHUNK, wanted - made)):
                source = models[made % len(models)]
                new_id = uuid.uuid4()
                at = oldest - timedelta(seconds=made + 1)
                session.add(
                    SearchEvent(
                        id=new_id,
                        created_at=at,
                        actor=source.actor,
                        query_sha256=uuid.uuid4().hex * 2,  # its own image: no rejection of another copy applies
                        query_name=source.query_name,
                        model_id=source.model_id,
                        threshold=source.threshold,
                        top_k=source.top_k,
                        parameters=source.parameters,
                        face_count=source.face_count,
                    )
                )
                session.flush()
                for hit in hits[source.id]:
                    session.add(
                        SearchHit(
                            search_id=new_id,
                            face_index=hit.face_index,
                            face_bbox=hit.face_bbox,
                            face_detector=hit.face_detector,
                            rank=hit.rank,
                            person_id=hit.person_id,
                            score=hit.score,
                            decision=hit.decision,
                            matched_faces=hit.matched_faces,
                            faces=hit.faces,
                        )
                    )
                if source.id in thumbs:
                    kept = thumbs[source.id]
                    session.add(
                        SearchThumbnail(
                            search_id=new_id,
                            face_index=kept.face_index,
                            jpeg=kept.jpeg,
                            created_at=at,
                            expires_at=kept.expires_at,
                        )
                    )
                made += 1


def serve(core: App) -> tuple[str, Any, threading.Thread]:
    import socket

    import uvicorn

    from identity.api.app import create_api

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_api(core), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def load_times(base: str, key: str, loads: int) -> dict[str, Any]:
    import httpx

    with httpx.Client(base_url=base, timeout=60) as client:
        signed = client.post("/ui/login", data={"key": key})
        assert signed.status_code in (200, 303), signed.text
        figures: dict[str, Any] = {}
        for name, path, headers in (
            ("ui_reviews", "/ui/reviews", {}),
            ("v1_reviews", "/v1/reviews?unreviewed=true&decision=match", {"Authorization": f"Bearer {key}"}),
        ):
            for _ in range(3):  # warm: templates, the first query plans
                client.get(path, headers=headers)
            times, size = [], 0
            for _ in range(loads):
                t0 = time.perf_counter()
                answer = client.get(path, headers=headers)
                times.append(time.perf_counter() - t0)
                assert answer.status_code == 200, answer.text[:300]
                size = len(answer.content)
            figures[name] = {
                "requests": loads,
                "p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
                "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
                "bytes": size,
            }
        return figures


def effort(browser: Any, base: str, key: str, mode: str, decisions: int) -> dict[str, Any]:
    """Make `decisions` decisions on /ui/reviews in one way: keyboard, mouse, or mouse-nojs."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, java_script_enabled=mode != "mouse-nojs")
    page = context.new_page()
    page.goto(f"{base}/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/(persons|search)$"))
    loads = [0]
    page.on("load", lambda _: loads.__setitem__(0, loads[0] + 1))
    page.goto(f"{base}/ui/reviews")
    keys = clicks = scrolls = 0
    started = time.perf_counter()
    for _ in range(decisions):
        if mode == "keyboard":
            page.wait_for_function("document.activeElement && document.activeElement.dataset.state === 'unreviewed'")
            card = page.evaluate("document.activeElement.id")
            page.keyboard.press("c")
            keys += 1
        else:
            pending = page.locator("section.review-card[data-state=unreviewed]:not([data-busy])").first
            card = pending.get_attribute("id")
            button = pending.locator("button.review-confirm")
            box = button.bounding_box()
            if box is None or box["y"] < 0 or box["y"] + box["height"] > 900:
                scrolls += 1  # a mouse user scrolls the button into view first
            if mode == "mouse-nojs":  # a form POST answered by a redirect to the same page
                with page.expect_navigation():
                    button.click()
            else:
                button.click()
            clicks += 1
        if mode != "mouse-nojs":
            _wait_decided(page, card)
    seconds = time.perf_counter() - started
    context.close()
    return {
        "decisions": decisions,
        "keys": keys,
        "clicks": clicks,
        "scrolls": scrolls,
        "actions_per_decision": round((keys + clicks + scrolls) / decisions, 3),
        "page_loads": loads[0],
        "page_loads_per_decision": round(loads[0] / decisions, 3),
        "seconds_per_decision": round(seconds / decisions, 3),
    }


def _wait_decided(page: Any, card: str) -> None:
    """Until the card shows a verdict or is gone (the page reloaded or redirected without it)."""
    for _ in range(3):  # a navigation in between destroys the context the check runs in: look again
        try:
            page.wait_for_function(
                "id => { const c = document.getElementById(id); return document.readyState === 'complete' && "
                "(!c || c.dataset.state !== 'unreviewed'); }",
                arg=card,
            )
            return
        except Exception as exc:  # playwright's Error: "Execution context was destroyed"
            if "context was destroyed" not in str(exc) and "navigation" not in str(exc):
                status = page.locator(f"#{card} .review-status")
                said = status.inner_text() if status.count() else "(card gone)"
                raise RuntimeError(f"card {card} was never decided: {said} (at {page.url})") from exc
    raise RuntimeError(f"card {card} was never decided")  # pragma: no cover


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="identity-review-bench-") as tmp:
        t0 = time.perf_counter()
        settings = build(Path(tmp) / "data", args.dataset, args.database_url, args.pending, args.reviewed)
        built_s = time.perf_counter() - t0
        with App.open(settings) as core:
            key = create_key(core, "benchmark-auditor", "audit").key
            base, server, thread = serve(core)
            try:
                figures: dict[str, Any] = {
                    "store": "postgres" if args.database_url else "sqlite",
                    "pending": args.pending,
                    "reviewed": args.reviewed,
                    "build_s": round(built_s, 1),
                    "load": load_times(base, key, args.loads),
                }
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                    figures["effort"] = {
                        mode: effort(browser, base, key, mode, args.decisions)
                        for mode in ("keyboard", "mouse", "mouse-nojs")
                    }
                    browser.close()
            finally:
                server.should_exit = True
                thread.join(timeout=30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000, help="match decisions waiting for review")
    parser.add_argument("--reviewed", type=int, default=0, help="older match decisions already reviewed")
    parser.add_argument("--decisions", type=int, default=50, help="decisions made in each way")
    parser.add_argument("--loads", type=int, default=100, help="timed requests of each route")
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty Postgres database to fill (default: SQLite in a temporary folder)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"store {figures['store']}, {figures['pending']} pending match decisions, {figures['reviewed']} reviewed "
        f"(built in {figures['build_s']} s)"
    )
    for name, row in figures["load"].items():
        print(f"  {name}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms over {row['requests']} ({row['bytes']} bytes)")
    for mode, row in figures["effort"].items():
        print(
            f"  {mode}: {row['actions_per_decision']} actions/decision (keys {row['keys']}, clicks {row['clicks']}, "
            f"scrolls {row['scrolls']}), {row['page_loads_per_decision']} page loads/decision "
            f"({row['page_loads']} over {row['decisions']}), {row['seconds_per_decision']} s/decision"
        )


if __name__ == "__main__":
    sys.exit(main())
