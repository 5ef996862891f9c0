"""The enrollment queue on real databases: claims, leases, retries."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta

import pytest
from sqlalchemy import update

from identity.store.sql import jobs
from identity.store.sql.db import make_engine, session_factory, transaction
from identity.store.sql.migrate import upgrade
from identity.store.sql.tables import Job, JobStatus, utcnow


@pytest.fixture
def sessions(database_url: str):
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def _queue(sessions, n: int, batch: str = "b1") -> None:
    with transaction(sessions) as s:
        jobs.enqueue(s, batch, (jobs.JobSpec(f"/img/{i}.jpg", f"P{i % 3}") for i in range(n)), chunk=7)


def test_claim_leases_each_job_once_and_finish_records_outcome(sessions) -> None:
    _queue(sessions, 20)
    with transaction(sessions) as s:
        first = [j.id for j in jobs.claim(s, "w1", 8, lease_seconds=60)]
    with transaction(sessions) as s:
        second = [j.id for j in jobs.claim(s, "w2", 100, lease_seconds=60)]
    assert len(first) == 8 and len(second) == 12 and not set(first) & set(second)
    with transaction(sessions) as s:
        assert jobs.claim(s, "w3", 5, lease_seconds=60) == []
        jobs.finish(s, first[0], "enrolled")
        jobs.finish(s, first[1], "failed", "x.jpg: truncated")
    with transaction(sessions) as s:
        counts = jobs.outcome_counts(s, "b1")
    assert counts == {"enrolled": 1, "failed": 1, "running": 18}


def test_expired_lease_is_claimed_again_then_given_up(sessions) -> None:
    _queue(sessions, 1)
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        with transaction(sessions) as s:
            (job,) = jobs.claim(s, f"w{attempt}", 1, lease_seconds=60)
            assert job.attempts == attempt
        with transaction(sessions) as s:
            assert jobs.claim(s, "other", 1, lease_seconds=60) == []  # lease still valid
            s.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with transaction(sessions) as s:
        assert jobs.claim(s, "late", 1, lease_seconds=60) == []
        (job,) = jobs.list_jobs(s, state="failed")
        assert "abandoned" in job.reason


def test_retry_requeues_failed_jobs(sessions) -> None:
    _queue(sessions, 3)
    with transaction(sessions) as s:
        claimed = jobs.claim(s, "w", 3, lease_seconds=60)
        jobs.finish(s, claimed[0].id, "failed", "boom")
        jobs.finish(s, claimed[1].id, "rejected", "blurry")
    with transaction(sessions) as s:
        assert jobs.retry(s, failed_only=True) == 1
        assert [j.status for j in jobs.list_jobs(s, state="queued")] == [JobStatus.queued]


def _drain(url: str, owner: str, out: mp.Queue[list[int]]) -> None:
    engine = make_engine(url)
    sessions = session_factory(engine)
    got: list[int] = []
    while True:
        with transaction(sessions) as s:
            claimed = jobs.claim(s, owner, 3, lease_seconds=60)
            if not claimed:
                break
            got.extend(j.id for j in claimed)
        with transaction(sessions) as s:
            for job_id in got[-len(claimed) :]:
                jobs.finish(s, job_id, "enrolled")
    out.put(got)


def test_two_workers_on_postgres_never_take_the_same_job(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    sessions = session_factory(engine)
    _queue(sessions, 300)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    workers = [ctx.Process(target=_drain, args=(postgres_url, f"w{i}", out)) for i in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    a, b = results
    assert not set(a) & set(b)
    assert len(a) + len(b) == 300
    engine.dispose()


def test_skip_locked_lets_a_second_claim_pass_an_open_one(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    sessions = session_factory(engine)
    _queue(sessions, 4)
    with transaction(sessions) as held:  # stays open while the second worker claims
        first = {j.id for j in jobs.claim(held, "w1", 2, lease_seconds=60)}
        with transaction(sessions) as other:
            second = {j.id for j in jobs.claim(other, "w2", 4, lease_seconds=60)}
    assert len(first) == 2 and len(second) == 2 and not first & second
    engine.dispose()


def test_cancelled_jobs_are_never_claimed_finished_over_or_retried_unless_asked(sessions) -> None:
    _queue(sessions, 4)
    _queue(sessions, 2, batch="b2")
    with transaction(sessions) as s:
        live, failed = jobs.claim(s, "w", 2, lease_seconds=60, batch="b1")
        jobs.finish(s, failed.id, "failed", "boom")
        assert jobs.cancel(s, [live.id]).refused_live == [live.id]  # its worker holds a live lease
        assert jobs.cancel(s, [live.id], force=True).cancelled == [live.id]
        jobs.finish(s, live.id, "enrolled")  # the worker finishing late does not undo the cancel
        assert jobs.cancel(s, state=JobStatus.failed).cancelled == [failed.id]
        assert len(jobs.cancel(s, batch="b2").cancelled) == 2
        assert jobs.claim(s, "w", 100, lease_seconds=60, batch="b2") == []
    with transaction(sessions) as s:
        assert jobs.outcome_counts(s, "b1") == {"cancelled": 2, "queued": 2}
        assert jobs.retry(s, failed_only=False) == 0
        assert jobs.retry(s, batch="b1", cancelled=True) == 2
        assert jobs.outcome_counts(s, "b1") == {"queued": 4}


def test_release_refunds_the_attempt_a_stale_lease_release_keeps_it_and_neither_touches_finished_jobs(sessions) -> None:
    _queue(sessions, 3)
    with transaction(sessions) as s:
        stopping, vanished, done = (j.id for j in jobs.claim(s, "w", 3, lease_seconds=60))
        jobs.finish(s, done, "enrolled")
    with transaction(sessions) as s:
        jobs.release(s, [stopping, done])  # a worker stopping before it did the job
        jobs.release_stale_leases(s, [vanished, done])  # doctor --repair: the worker vanished mid-job
    with transaction(sessions) as s:
        state = {j.id: (j.status, j.attempts, j.lease_owner, j.lease_expires_at) for j in jobs.list_jobs(s)}
    assert state[stopping] == (JobStatus.queued, 0, None, None)
    assert state[vanished] == (JobStatus.queued, 1, None, None)  # MAX_ATTEMPTS still counts it
    assert state[done][:2] == (JobStatus.done, 1)
