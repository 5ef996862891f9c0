"""What one search costs the database, on both stores: one connection, reads the indexes answer, and its log
entry in one insert per table however many hits it ranked (benchmarks/search_latency.py times the stages)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from test_search_audit import gallery, probe  # noqa: F401 (gallery is a fixture)

from identity.app.core import open_deployment
from identity.services.search.identify import SearchOptions, search_image
from identity.services.search.stages import STAGES, recording

SCANNED = re.compile(r"^SCAN \w+$")  # SQLite's plan for reading a whole table (an index scan says USING ...)


@contextmanager
def watched(engine: Engine) -> Iterator[tuple[list[tuple[str, object]], list[int]]]:
    """The statements `engine` runs inside the block (text, parameters), and the connections it hands out."""
    statements: list[tuple[str, object]] = []
    checkouts: list[int] = []

    def ran(_conn, _cursor, statement, parameters, _context, _many) -> None:
        statements.append((statement, parameters))

    def checked_out(*_args) -> None:
        checkouts.append(1)

    event.listen(engine, "before_cursor_execute", ran)
    event.listen(engine.pool, "checkout", checked_out)
    try:
        yield statements, checkouts
    finally:
        event.remove(engine, "before_cursor_execute", ran)
        event.remove(engine.pool, "checkout", checked_out)


def full_scans(engine: Engine, statement: str, parameters: object) -> list[str]:
    """The tables the database would read whole to run this statement (none when indexes answer it)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()  # type: ignore[arg-type]
            return [row[3] for row in plan if SCANNED.match(row[3])]
        conn.exec_driver_sql("SET enable_seqscan = off")  # a table this small is read whole unless told not to
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()  # type: ignore[arg-type]
        return [row[0] for row in plan if "Seq Scan" in row[0]]


def test_a_search_takes_one_connection_reads_by_index_and_logs_each_table_in_one_insert(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions())  # once per process: counts, the model row
        with watched(dep.app.engine) as (statements, checkouts):
            result = search_image(dep.app, probe(lfw, "Al_Gore", 4), SearchOptions(top_k=3))
        [face] = result.faces
        assert face.decision == "match" and len(face.candidates) == 3  # three hits to log, and a thumbnail
        assert len(checkouts) == 1
        inserts = [re.match(r"INSERT INTO (\w+)", s).group(1) for s, _ in statements if s.startswith("INSERT")]
        assert inserts == ["search_events", "search_hits", "search_thumbnails"]
        reads = [(s, p) for s, p in statements if s.startswith(("SELECT", "DELETE", "UPDATE"))]
        assert len(reads) == 2  # the persons with the image's rejected matches (one union), expired thumbnails' delete
        for statement, parameters in reads:
            assert full_scans(dep.app.engine, statement, parameters) == [], statement


def test_a_recorded_search_times_each_stage_and_an_unrecorded_one_keeps_nothing(gallery) -> None:
    settings, lfw = gallery
    with open_deployment(settings) as dep:
        with recording() as times:
            search_image(dep.app, probe(lfw, "Al_Gore", 5), SearchOptions())
        assert list(times) == list(STAGES)  # in the order the search ran them
        assert all(ms > 0 for ms in times.values())
        recorded = dict(times)
        search_image(dep.app, probe(lfw, "Al_Gore", 4), SearchOptions())
        assert times == recorded  # a search outside the block adds nothing to it
