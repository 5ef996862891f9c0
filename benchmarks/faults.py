"""Reliability trials (issues 11, 21): crashes, worker takeover, erasure, bad input and settings, worker processes.

    .venv/bin/python benchmarks/faults.py [--images 600] [--kills 10] [--backends sqlite,postgres]
                                          [--seed 7] [--json]
                                          [--sections crash,worker,erasure,settings,processes,binding,health,bad]

Per backend (SQLite+Edge, Postgres+Edge), each in fresh stores (temporary data dirs,
throwaway Postgres databases), driving `identity` in subprocesses:

- clean: enroll the first --images lfw-dev photos (sorted person/photo) once; its SQL
  rows and vectors are the truth the other trials are compared with.
- crash: SIGKILL the whole `identity enroll DIR --workers 1` process group at a seeded
  random moment, --kills times in a row (after each, every vector must have a face row,
  every indexed face a vector, no person-photo pair two faces), then run to completion
  and compare with the clean run.
- worker (Postgres): `enroll --queue-only`, one `identity worker` SIGKILLed mid-batch,
  then a second `identity worker --drain` must finish every job, the dead one's included.
- erasure: enroll a person from photos under telltale paths, search once, `person
  delete`, then scan every file under the data dir (and, on Postgres, every table's
  rows) for their vectors (float32 and the WAL's CBOR encoding), uuids, ids, name and paths;
  then the same with the purge refused (`chattr +i` on the vectors directory): exit 4, the
  erasure pending in doctor, finished by a second `person delete`, and the same scan;
  then `person delete` SIGKILLed once its recorded erasure reaches each step in turn (a search
  having kept the person's photo as an unknown face), finished by `person delete` or `doctor
  --repair`, and the same scan (the unknown face gone too).
- bad: each bad input of issues 11 and 21 as one case: exit code, a one-line message naming
  the file or setting (or its report row), and the good inputs beside it processed.
- settings: each bad setting of issue 21 (environment or TOML) as one case: `enroll`
  exits 1 with one line naming the setting, a ConfigError on stdout, nothing queued.
- processes: `identity enroll --workers 2` with its main process alone SIGKILLed while the
  workers run (twice): no worker or resource tracker may run a few seconds later; and
  after a normal exit none of its children may be left (running or unreaped).
- binding: a populated data dir with an empty and with another deployment's database
  (`doctor --repair` refused, exit 4, vectors kept); orphan vectors beyond doctor's deletion
  limit (refused without --force, exit 1, nothing deleted); two first commands at once on a
  fresh store, several rounds (both succeed).
- health: a stored vector's bytes overwritten (search exit 4, `doctor --deep` finds it,
  `--repair` re-embeds it); the store on an almost full 48 MB tmpfs (exit 4 NoSpace, not
  SIGBUS; "not run" where no tmpfs can be mounted); a deleted faces shard, a missing
  chunk_0.mmap and, on SQLite, a truncated database file (exit 4 with what to run, or a
  warning; `doctor --repair` rebuilds the shard). These share one small store per backend.

Each section is a function registered with @trial, each bad input or setting a case
registered with @bad_case: a new fault class is one more small registered function.

Prints one table (trials run, lost, duplicated, left inconsistent: all must be 0) and
the bad-input cases that failed, with reasons; exit 0 only if every count is 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IDENTITY = str(Path(sys.executable).with_name("identity"))
# Worker trial: far longer than the second worker needs for what is left, so a drain that
# does not wait for (or see through) the dead worker's leases fails every time, not by chance.
LEASE_SECONDS = 120
STARTUP_KILLS = 0.2  # share of enrollment kills aimed at start-up (schema, queueing, model load)
TIMEOUT = 900  # seconds for any one command; a hang is reported, not waited out

console = Console(stderr=True)


# ---------------------------------------------------------------- results


@dataclass
class Row:
    kind: str
    backend: str
    trials: int = 0
    lost: int = 0
    duplicated: int = 0
    inconsistent: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.inconsistent == 0

    def fail(self, reason: str, count: int = 1) -> None:
        self.inconsistent += count
        self.notes.append(reason)


@dataclass
class Case:
    """One bad-input case: passed, or why not."""

    backend: str
    name: str
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def check(self, condition: bool, reason: str) -> None:
        if not condition:
            self.passed = False
            self.reasons.append(reason)


# ---------------------------------------------------------------- the trial registry
#
# A trial is a function (Context) -> Row registered with @trial(section, backends); a bad
# input or a bad setting is a method of BadInputs (or a function of it) registered with
# @bad_case(backends): each becomes one Case of its row. Rows for new fault classes are new
# small registered functions; nothing else needs to change.


@dataclass
class Context:
    """What a trial gets for one backend: the store holding the clean run, its truth, and inputs."""

    backend: str
    args: argparse.Namespace
    root: Path  # temporary folder for the trial's own stores and files
    dataset: Path  # the --images photos, as person/photo folders
    clean: Store
    truth: Truth
    spare: Spare  # lfw-dev photos outside the dataset, each handed out once
    rng: random.Random
    stack: ExitStack  # closed after the backend's last trial: stores shared by several trials
    cases: list[Case] = field(default_factory=list)  # the cases of the case rows run so far
    shared: dict[str, Any] = field(default_factory=dict)  # what trials share, e.g. the small store


@dataclass(frozen=True)
class Trial:
    section: str  # --sections name
    backends: tuple[str, ...]
    run: Callable[[Context], Row]


TRIALS: list[Trial] = []
BOTH = ("sqlite", "postgres")


def trial(
    section: str, backends: tuple[str, ...] = BOTH
) -> Callable[[Callable[[Context], Row]], Callable[[Context], Row]]:
    """Register a trial: run for `section` on `backends`, after the clean run, in registration order."""

    def register(run: Callable[[Context], Row]) -> Callable[[Context], Row]:
        TRIALS.append(Trial(section, backends, run))
        return run

    return register


# ---------------------------------------------------------------- stores and the CLI


@dataclass
class Store:
    backend: str
    data_dir: Path
    database_url: str | None  # None: SQLite under data_dir
    settings_env: dict[str, str] = field(default_factory=dict)  # the deployment's own settings, for every command

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'identity.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        env["IDENTITY_DATA_DIR"] = str(self.data_dir)
        if self.database_url:
            env["IDENTITY_DATABASE_URL"] = self.database_url
        env.update(self.settings_env)
        env.update(extra)
        return env

    def settings(self) -> Any:
        from identity.config import Settings

        return Settings(data_dir=self.data_dir, database_url=self.database_url)


def sql_engine(url: str, **kwargs: Any) -> Engine:
    """The harness's own engine: psycopg2 for Postgres (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return create_engine(url, **kwargs)


def admin_engine() -> Engine:
    return sql_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def postgres_available() -> str | None:
    """None if the server answers, else why not."""
    try:
        engine = admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        return f"no Postgres at {ADMIN_URL}: {str(exc).splitlines()[0]}"


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"identity_faults_{uuid.uuid4().hex[:10]}"
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextmanager
def fresh_store(backend: str, root: Path, name: str) -> Iterator[Store]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"{backend}-{name}-", dir=root))
    try:
        if backend == "postgres":
            with fresh_database() as url:
                yield Store(backend, data_dir, url)
        else:
            yield Store(backend, data_dir, None)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.out)
        except ValueError:
            return None

    @property
    def crashed(self) -> bool:
        """An unexpected exception (the CLI's last line of defence), not a refusal it meant."""
        return "Traceback" in self.err or "run with --debug for details" in self.err

    @property
    def error_lines(self) -> list[str]:
        """Non-empty stderr lines, progress bars left out."""
        return [line for line in self.err.splitlines() if line.strip() and not _is_progress(line)]

    def describe(self) -> str:
        lines = self.error_lines
        return f"exit {self.rc}" + (
            f", stderr {lines[0][:160]!r}" + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "") if lines else ""
        )


def _is_progress(line: str) -> bool:
    return any(mark in line for mark in ("━", "img/s", "\r"))


def cli(store: Store, *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Result:
    """Run `identity ARGS` to the end (or kill its process group after `timeout`)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [IDENTITY, *args],
        env=env or store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(harness) timed out after {timeout:.0f} s and was killed"
    return Result(proc.returncode, out, err, time.perf_counter() - started)


def start(store: Store, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `identity ARGS` in its own process group, output discarded (a progress bar fills pipes)."""
    return subprocess.Popen(
        [IDENTITY, *args],
        env=env or store.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group (the CLI and its model worker processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_then_kill(store: Store, args: list[str], target: int | None, delay: float) -> bool:
    """Start a command; once `target` jobs are finished (None: at once), wait `delay` s and SIGKILL it.

    Aiming at progress rather than at a clock keeps every kill inside the run however
    loaded the machine is; the delay spreads kills over a chunk's model work and writes.
    Returns False if the command had exited before the kill.
    """
    proc = start(store, *args)
    if target is not None:
        engine = sql_engine(store.sql_url)
        try:
            wait_for_done(engine, target, proc)
        finally:
            engine.dispose()
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        sigkill(proc)
        return True


# ---------------------------------------------------------------- what a store holds


@dataclass
class Snapshot:
    """SQL rows and vectors of a store, reduced to what the trials compare."""

    faces: Counter = field(default_factory=Counter)  # (external id, sha256, model) -> indexed faces
    pending: int = 0
    states: dict[tuple[str, str], str] = field(default_factory=dict)  # (path, external id) -> final state
    vectors: int = 0
    orphans: int = 0  # vectors without a live face row
    missing: int = 0  # indexed faces without a vector
    errors: list[str] = field(default_factory=list)  # e.g. a vector store that cannot be opened

    @property
    def indexed(self) -> int:
        return sum(self.faces.values())

    @property
    def duplicated(self) -> int:
        return sum(1 for n in self.faces.values() if n > 1) + max(0, self.vectors - self.indexed - self.pending)

    def outcomes(self) -> Counter:
        return Counter(self.states.values())


def final_state(outcomes: list[tuple[str, str | None, str | None]]) -> str:
    """One input's state over all its jobs (a resumed run settles earlier work as `duplicate`)."""
    found = {outcome for _, outcome, _ in outcomes}
    if any(status in ("queued", "running") for status, _, _ in outcomes):
        return "unfinished"
    if found == {None}:
        return "|".join(sorted({str(status) for status, _, _ in outcomes}))  # e.g. cancelled
    if "enrolled" in found:
        return "enrolled"
    if "rejected" in found or any(o == "duplicate" and "rejected" in (r or "") for _, o, r in outcomes):
        return "rejected"
    for outcome in ("conflict", "failed", "duplicate"):
        if outcome in found:
            return outcome
    return "|".join(sorted(str(o) for o in found))


def snapshot(store: Store) -> Snapshot:
    snap = Snapshot()
    engine = sql_engine(store.sql_url)
    try:
        if "faces" not in inspect(engine).get_table_names():
            return snap  # killed before the schema existed
        with engine.connect() as conn:
            faces = conn.execute(
                text(
                    "SELECT p.external_id, i.sha256, m.name, m.version, f.status, f.id FROM faces f "
                    "JOIN persons p ON p.id = f.person_id JOIN images i ON i.id = f.image_id "
                    "JOIN models m ON m.id = f.model_id"
                )
            ).all()
            models = conn.execute(text("SELECT name, version, dim FROM models")).all()
            jobs = conn.execute(text("SELECT source_path, external_id, status, outcome, reason FROM jobs")).all()
    finally:
        engine.dispose()
    by_key: dict[tuple[str, str], list] = {}
    for path, external_id, status, outcome, reason in jobs:
        by_key.setdefault((path, external_id), []).append((status, outcome, reason))
    snap.states = {key: final_state(rows) for key, rows in by_key.items()}
    live: dict[str, set[uuid.UUID]] = {}
    indexed: dict[str, set[uuid.UUID]] = {}
    for external_id, sha, name, version, status, face_id in faces:
        model = f"{name}@{version}"
        if status == "indexed":
            snap.faces[(external_id, sha, model)] += 1
            indexed.setdefault(model, set()).add(uuid.UUID(str(face_id)))
        snap.pending += status == "pending"
        if status != "rejected":
            live.setdefault(model, set()).add(uuid.UUID(str(face_id)))
    for name, version, dim in models:
        model = f"{name}@{version}"
        try:
            held = vector_ids(store, model, dim)
        except Exception as exc:  # noqa: BLE001 - a store that cannot be opened is what we report
            snap.errors.append(f"{model} vectors unreadable: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        snap.vectors += len(held)
        snap.orphans += len(held - live.get(model, set()))
        snap.missing += len(indexed.get(model, set()) - held)
    return snap


def vector_ids(store: Store, model: str, dim: int) -> set[uuid.UUID]:
    """Face ids held in a model's collection (the CLI has exited, so the embedded shard is free)."""
    from identity.store.vectors import open_vector_index

    with open_vector_index(store.settings(), model, dim) as index:
        return {face_id for face_id, _ in index.iter_ids()}


def compare(clean: Snapshot, trial: Snapshot, row: Row) -> None:
    """Count what the trial lost or doubled against the clean run, and every disagreement."""
    lost = set(clean.faces) - set(trial.faces)
    row.lost += len(lost)
    if lost:
        row.notes.append(f"lost {len(lost)} person-photo pairs, e.g. {sorted(lost)[0][0]}")
    row.duplicated += trial.duplicated
    if trial.duplicated:
        row.notes.append(f"{trial.duplicated} pairs with >1 indexed face or surplus vectors")
    extra = set(trial.faces) - set(clean.faces)
    if extra:
        row.fail(f"{len(extra)} pairs indexed that the clean run did not index")
    if trial.vectors != trial.indexed:
        row.fail(f"{trial.vectors} vectors for {trial.indexed} indexed faces")
    if trial.pending:
        row.fail(f"{trial.pending} faces left pending")
    differ = [k for k in clean.states if trial.states.get(k) != clean.states[k]]
    if differ:
        k = differ[0]
        row.fail(
            f"{len(differ)} inputs end in another state, e.g. {Path(k[0]).name}: "
            f"{trial.states.get(k)} vs {clean.states[k]} in the clean run"
        )


def invariant_problems(snap: Snapshot) -> list[str]:
    """What must hold at any instant, even right after a SIGKILL (pending rows may remain)."""
    problems = list(snap.errors)
    if snap.orphans:
        problems.append(f"{snap.orphans} vectors without a face row")
    if snap.missing:
        problems.append(f"{snap.missing} indexed faces without a vector")
    doubled = sum(1 for n in snap.faces.values() if n > 1)
    if doubled:
        problems.append(f"{doubled} person-photo pairs with two indexed faces")
    return problems


def doctor_clean(store: Store) -> tuple[bool, str]:
    result = cli(store, "doctor", "--json")
    report = result.json()
    if isinstance(report, dict) and report.get("clean") is True and result.rc == 0:
        return True, ""
    problems = {k: v for k, v in (report or {}).items() if v and k not in ("clean", "repaired")}
    return False, f"doctor not clean: {problems or result.describe()}"


# ---------------------------------------------------------------- inputs


def pick_images(dataset: Path, count: int) -> tuple[list[Path], list[Path]]:
    """The first `count` images by sorted person/photo, and every photo of the persons after them."""
    chosen: list[Path] = []
    rest: list[Path] = []
    for person in sorted(p for p in dataset.iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.is_file())
        if len(chosen) < count:
            chosen.extend(photos[: count - len(chosen)])
        else:
            rest.extend(photos)
    return chosen, rest


def copy_dataset(images: list[Path], target: Path) -> Path:
    for image in images:
        (target / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target / image.parent.name / image.name)
    return target


class Spare:
    """lfw-dev photos outside the enrolled set, handed out once each per store."""

    def __init__(self, photos: list[Path]) -> None:
        self.photos = list(photos)

    def take(self, count: int) -> list[Path]:
        taken, self.photos = self.photos[:count], self.photos[count:]
        return taken

    def person_with(self, count: int) -> list[Path]:
        """`count` photos of one person (the first with that many)."""
        by_person: dict[str, list[Path]] = {}
        for photo in self.photos:
            by_person.setdefault(photo.parent.name, []).append(photo)
        chosen = next(photos[:count] for photos in by_person.values() if len(photos) >= count)
        self.photos = [p for p in self.photos if p.parent.name != chosen[0].parent.name]
        return chosen


# ---------------------------------------------------------------- trials


@dataclass
class Truth:
    snap: Snapshot
    enrolled_paths: list[str]


def clean_run(store: Store, dataset: Path, workers: int) -> tuple[Row, Truth | None]:
    row = Row("clean run", store.backend, trials=1)
    result = cli(store, "enroll", str(dataset), "--workers", str(workers), "--json")
    if result.rc not in (0, 5) or result.json() is None:
        row.fail(f"enroll: {result.describe()}")
        return row, None
    snap = snapshot(store)
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    for problem in invariant_problems(snap):
        row.fail(problem)
    if snap.vectors != snap.indexed:
        row.fail(f"{snap.vectors} vectors for {snap.indexed} indexed faces")
    counts = snap.outcomes()
    row.notes.append(
        f"{len(snap.states)} images: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {snap.vectors} vectors; enroll {result.seconds:.1f} s"
    )
    enrolled = [path for (path, _), state in snap.states.items() if state == "enrolled"]
    return row, Truth(snap, sorted(enrolled))


@trial("crash")
def crash(ctx: Context) -> Row:
    if not ctx.args.kills:
        return Row("SIGKILL enroll x N, resume", ctx.backend, notes=["--kills 0"])
    with fresh_store(ctx.backend, ctx.root, "crash") as store:
        return crash_trials(store, ctx.dataset, ctx.truth, ctx.args.kills, ctx.rng)


def crash_trials(store: Store, dataset: Path, truth: Truth, kills: int, rng: random.Random) -> Row:
    row = Row("SIGKILL enroll x N, resume", store.backend)
    args = ["enroll", str(dataset), "--workers", "1"]
    total = len(truth.snap.states)
    landed = early = 0
    for i in range(kills):
        done = sum(1 for s in snapshot(store).states.values() if s != "unfinished")
        if done >= total or rng.random() < STARTUP_KILLS:
            target, delay, when = None, rng.uniform(0.5, 5.0), "in start-up"
            early += 1
        else:
            target, delay = rng.randrange(done, total), rng.uniform(0.0, 2.0)
            when = f"{delay:.1f} s after job {target}"
        landed += run_then_kill(store, args, target, delay)
        row.trials += 1
        problems = invariant_problems(snapshot(store))
        if problems:
            row.fail(f"after kill {i + 1} ({when}): " + "; ".join(problems))
    final = cli(store, *args, "--json")
    if final.rc not in (0, 5):
        row.fail(f"completion run: {final.describe()}")
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    compare(truth.snap, snapshot(store), row)
    row.notes.insert(0, f"{landed} of {kills} kills landed mid-run ({early} aimed at start-up)")
    return row


@trial("worker", backends=("postgres",))
def worker(ctx: Context) -> Row:
    with fresh_store(ctx.backend, ctx.root, "worker") as store:
        return worker_takeover(store, ctx.dataset, ctx.truth, ctx.rng)


def worker_takeover(store: Store, dataset: Path, truth: Truth, rng: random.Random) -> Row:
    row = Row("SIGKILL worker, 2nd takes over", store.backend, trials=1)
    env = store.env(IDENTITY_ENROLL__LEASE_SECONDS=str(LEASE_SECONDS))
    queued = cli(store, "enroll", str(dataset), "--queue-only", "--json", env=env)
    if queued.rc != 0:
        row.fail(f"enroll --queue-only: {queued.describe()}")
        return row
    total = len(truth.snap.states)
    target = int(total * rng.uniform(0.5, 0.85))
    first = start(store, "worker", "--workers", "1", "--poll", "1", env=env)
    engine = sql_engine(store.sql_url)
    try:
        done = wait_for_done(engine, target, first)
        sigkill(first)
        with engine.connect() as conn:
            leased = [r[0] for r in conn.execute(text("SELECT id FROM jobs WHERE status = 'running'"))]
        killed_at = time.perf_counter()
        second = cli(
            store,
            "worker",
            "--drain",
            "--workers",
            "1",
            "--poll",
            "1",
            "--json",
            env=env,
            timeout=LEASE_SECONDS + TIMEOUT,
        )
        waited = time.perf_counter() - killed_at
        with engine.connect() as conn:
            unfinished = conn.execute(text("SELECT id, status FROM jobs WHERE status IN ('queued', 'running')")).all()
        left = len(unfinished)
        stuck = sum(1 for job_id, status in unfinished if status == "running" and job_id in set(leased))
    finally:
        engine.dispose()
    row.notes.append(
        f"killed after {done} of {total} jobs, {len(leased)} leased by the dead worker; "
        f"2nd worker ran {waited:.0f} s (lease {LEASE_SECONDS} s)"
    )
    if second.rc not in (0, 5):
        row.fail(f"2nd worker: {second.describe()}")
    if stuck:
        row.fail(
            f"2nd worker --drain exited leaving {stuck} jobs leased by the dead worker "
            "(untouched until their lease expires and another worker runs)"
        )
    if left and left != stuck:
        row.fail(f"{left} jobs still queued or running")
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    compare(truth.snap, snapshot(store), row)
    return row


def wait_for_done(engine: Engine, target: int, proc: subprocess.Popen) -> int:
    """Poll the queue until `target` jobs are finished in all (or the process ended); returns how many are."""
    done = -1
    deadline = time.perf_counter() + TIMEOUT
    while done < target and proc.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.1)
        try:
            with engine.connect() as conn:
                done = (
                    conn.execute(
                        text("SELECT count(DISTINCT source_path) FROM jobs WHERE status IN ('done', 'failed')")
                    ).scalar()
                    or 0
                )
        except Exception:  # noqa: BLE001 - no schema yet: the command is still starting
            continue
    return max(done, 0)


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True)
class Telltale:
    kind: str  # what it is: "external id", "vector f32", ...
    value: bytes  # how it would be written in a file or a row


@trial("erasure")
def erasure(ctx: Context) -> Row:
    return erasure_scan(ctx.clean, ctx.root, ctx.spare, ctx.rng)


def erasure_scan(store: Store, root: Path, spare: Spare, rng: random.Random) -> Row:
    row = Row("erasure scan", store.backend, trials=1)
    enrolled = enroll_telltale(store, root, spare, rng, row)
    if enrolled is None:
        return row
    deleted = cli(store, "person", "delete", enrolled.external_id, "--json")
    if deleted.rc != 0:
        row.fail(f"person delete: {deleted.describe()}")
    check_erased(store, row, enrolled)
    return row


@trial("erasure")
def interrupted_erasure(ctx: Context) -> Row:
    return erasure_interrupted(ctx.clean, ctx.root, ctx.spare, ctx.rng)


def erasure_interrupted(store: Store, root: Path, spare: Spare, rng: random.Random) -> Row:
    """Issue 21's repro: a purge the file system refuses (`chattr +i` on the vectors directory) exits 4 with a
    JSON error and leaves the erasure pending in doctor; the next `person delete` finishes it, leaving nothing."""
    row = Row("erasure interrupted", store.backend, trials=1)
    enrolled = enroll_telltale(store, root, spare, rng, row)
    if enrolled is None:
        return row
    vectors = store.data_dir / "vectors"
    if subprocess.run(["chattr", "+i", str(vectors)], capture_output=True).returncode != 0:
        row.notes.append("not run: chattr +i is not permitted here")
        row.trials = 0
        return row
    try:
        stopped = cli(store, "person", "delete", enrolled.external_id, "--json")
        doctor = cli(store, "doctor", "--json").json()
    finally:
        subprocess.run(["chattr", "-i", str(vectors)], check=True)
    error = stopped.json()
    if stopped.rc != 4 or not isinstance(error, dict) or error.get("error_type") != "ErasurePending":
        row.fail(f"stopped delete: {stopped.describe()}")
    if not isinstance(doctor, dict) or doctor.get("pending_erasures") != 1 or doctor.get("clean") is not False:
        row.fail(f"doctor did not report the pending erasure: {doctor}")
    finished = cli(store, "person", "delete", enrolled.external_id, "--json")
    if finished.rc != 0 or (finished.json() or {}).get("completed_pending") is not True:
        row.fail(f"second delete did not finish it: {finished.describe()}")
    check_erased(store, row, enrolled)
    return row


ERASURE_STEPS = ("recorded", "sql", "vectors", "uploads", "forgotten", "complete")  # pending_erasures.step, in order


@trial("erasure")
def killed_erasure(ctx: Context) -> Row:
    """`person delete` SIGKILLed once its recorded erasure reaches each step in turn (a person kept as an
    unknown face by a search too), finished by `person delete` or `doctor --repair`, then the full scan."""
    row = Row("erasure SIGKILLed at a step", ctx.backend)
    reached: Counter = Counter()
    with fresh_store(ctx.backend, ctx.root, "erasure-kill") as store:
        store.settings_env["IDENTITY_REVIEW__KEEP_UNKNOWN_FACES"] = "true"
        for i, target in enumerate(ERASURE_STEPS[:-1]):
            enrolled = enroll_telltale(store, ctx.root, ctx.spare, ctx.rng, row)
            if enrolled is None or not keep_unknown_face(store, enrolled, row):
                return row
            step = kill_delete_at(store, enrolled.external_id, target)
            reached[step] += 1
            row.trials += 1
            by_doctor = step not in ("none", "complete") and i % 2 == 1  # a pending erasure: the other way too
            finish = (
                cli(store, "doctor", "--repair", "--json")
                if by_doctor
                else cli(store, "person", "delete", enrolled.external_id, "--json")
            )
            if finish.rc not in (0, 1) or finish.crashed:  # doctor --repair exits 1 for what it found
                row.fail(f"finishing after a kill at {step}: {finish.describe()}")
            kept = count_rows(store, "SELECT count(*) FROM unknown_faces")
            if kept:
                row.fail(f"{kept} kept unknown faces left after the erasure")
            check_erased(store, row, enrolled)
    row.notes = [n for n in row.notes if not n.startswith(("before delete", "not scanned"))]
    row.notes.insert(
        0,
        "killed at step: "
        + ", ".join(f"{s} {reached[s]}" for s in ("none", *ERASURE_STEPS) if reached[s])
        + "; finished by person delete / doctor --repair in turn; kept unknown face erased; byte scan",
    )
    return row


def keep_unknown_face(store: Store, enrolled: Telltaled, row: Row) -> bool:
    """Issue 21's repro: search the person's unenrolled photo with --threshold 3 (the store keeps unknown faces), so it
    is
    kept as an unknown face (its row names the telltale folder: the scan sees it if the erasure leaves it)."""
    searched = cli(store, "search", str(enrolled.photos[3]), "--threshold", "3", "--json")
    kept = count_rows(store, "SELECT count(*) FROM unknown_faces")
    if searched.rc not in (0, 3) or kept != 1:
        row.fail(f"set-up: search keeping an unknown face: {searched.describe()}, {kept} kept")
        return False
    return True


def kill_delete_at(store: Store, external_id: str, target: str) -> str:
    """Start `person delete`, SIGKILL it as soon as its pending erasure has reached `target` (polled); the step
    the erasure was left at ("none": not recorded yet; "complete": the kill came too late)."""
    before = count_rows(store, "SELECT max(id) FROM pending_erasures")
    proc = start(store, "person", "delete", external_id)
    engine = sql_engine(store.sql_url)
    try:
        step = "none"
        while proc.poll() is None and (step == "none" or ERASURE_STEPS.index(step) < ERASURE_STEPS.index(target)):
            step = erasure_step(engine, before)
            time.sleep(0.005)
        sigkill(proc)
        return erasure_step(engine, before)
    finally:
        engine.dispose()


def erasure_step(engine: Engine, after_id: int) -> str:
    """The step of the erasure recorded after row `after_id` ("none": not recorded yet)."""
    try:
        with engine.connect() as conn:
            step = conn.execute(
                text("SELECT step FROM pending_erasures WHERE id > :i ORDER BY id DESC LIMIT 1"), {"i": after_id}
            ).scalar()
    except Exception:  # noqa: BLE001 - SQLite busy under the writer: read again
        return "none"
    return step or "none"


def count_rows(store: Store, sql: str, **params: Any) -> int:
    engine = sql_engine(store.sql_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar() or 0
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Telltaled:
    external_id: str
    tokens: list[Telltale]
    held: dict[str, Any]
    vectors_before: int
    photos: list[Path] = field(default_factory=list)  # the first three enrolled, the fourth searched


def enroll_telltale(store: Store, root: Path, spare: Spare, rng: random.Random, row: Row) -> Telltaled | None:
    """A person enrolled from photos under telltale paths and searched once; the scan proven to see them."""
    token = f"tt{rng.getrandbits(40):010x}"
    folder = root / f"telltale-{token}-{store.backend}"
    folder.mkdir()
    photos = []
    for i, source in enumerate(spare.person_with(4)):
        photos.append(folder / f"{token}-photo-{i}{source.suffix}")
        shutil.copy(source, photos[-1])
    external_id, name = f"ERASE-{token}", f"Telltale {token}"
    enrolled = cli(store, "enroll", "--person", external_id, "--name", name, *map(str, photos[:3]), "--json")
    searched = cli(store, "search", str(photos[3]), "--json")
    if enrolled.rc != 0 or searched.rc not in (0, 3):
        row.fail(f"set-up: enroll {enrolled.describe()}, search {searched.describe()}")
        return None
    held = held_for(store, external_id)
    tokens = telltales(held, external_id, name, str(folder))
    control = sorted({kind for kind, _ in scan(store, tokens)})
    row.notes.append(f"before delete found: {', '.join(control)}")
    if "vector f32" not in control:
        row.fail("control: the stored vectors were not found in any file before deletion (scan blind)")
    return Telltaled(external_id, tokens, held, snapshot(store).vectors, photos)


def check_erased(store: Store, row: Row, enrolled: Telltaled) -> None:
    """After the erasure: no telltale in any file or row, the person's vectors gone, doctor clean."""
    after = scan(store, enrolled.tokens)
    row.inconsistent += len(after)
    if after:
        places: dict[str, list[str]] = {}
        for kind, place in sorted(after):
            places.setdefault(kind, []).append(short_place(place))
        row.notes.append(
            "left: " + "; ".join(f"{kind} ({', '.join(sorted(set(where)))})" for kind, where in places.items())
        )
    snap = snapshot(store)
    face_vectors = len(enrolled.held["face_ids"])  # the template lives in its own collection, not counted here
    if snap.vectors != enrolled.vectors_before - face_vectors:
        row.fail(f"vectors {enrolled.vectors_before} -> {snap.vectors}, expected -{face_vectors}")
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    row.notes.append(
        "not scanned: int8 quantized copies (their scale is the engine's)"
        + ("; Postgres heap files (server-side)" if store.database_url else "")
    )


def short_place(place: str) -> str:
    """`vectors/faces_x/segments/<uuid>/payload_storage/page_0.dat` -> `edge payload_storage/page_0.dat`."""
    parts = place.split("/")
    if parts[0] == "vectors" and "segments" in parts:
        return "edge " + "/".join(parts[parts.index("segments") + 2 :])
    if parts[0] == "vectors":
        return "edge " + "/".join(parts[2:])
    return place


def held_for(store: Store, external_id: str) -> dict[str, Any]:
    """The person's uuid, face uuids, image digests and stored vectors (faces and template, and how many
    are faces), read before deletion."""
    from identity.store.vectors import open_vector_index

    engine = sql_engine(store.sql_url)
    with engine.connect() as conn:
        person_id = conn.execute(text("SELECT id FROM persons WHERE external_id = :e"), {"e": external_id}).scalar()
        rows = conn.execute(
            text(
                "SELECT f.id, i.sha256, m.name, m.version, m.dim FROM faces f JOIN images i ON i.id = f.image_id "
                "JOIN models m ON m.id = f.model_id WHERE f.person_id = :p"
            ),
            {"p": person_id},
        ).all()
    engine.dispose()
    vectors: list[np.ndarray] = []
    face_vectors = 0
    by_model: dict[tuple[str, int], list[uuid.UUID]] = {}
    for face_id, _, model, version, dim in rows:
        by_model.setdefault((f"{model}@{version}", dim), []).append(uuid.UUID(str(face_id)))
    person = uuid.UUID(str(person_id))
    for (model, dim), face_ids in by_model.items():
        with open_vector_index(store.settings(), model, dim) as index, index.templates() as templates:
            faces = list(index.vectors(face_ids).values())
            face_vectors += len(faces)
            vectors.extend(faces)
            vectors.extend(templates.vectors([person]).values())  # the mean of the faces: biometric too
    return {
        "person_id": person,
        "face_ids": [uuid.UUID(str(r[0])) for r in rows],
        "sha256": sorted({r[1] for r in rows}),
        "vectors": vectors,
        "face_vectors": face_vectors,
    }


def telltales(held: dict[str, Any], external_id: str, name: str, folder: str) -> list[Telltale]:
    tokens = [
        Telltale("external id", external_id.encode()),
        Telltale("display name", name.encode()),
        Telltale("source path", folder.encode()),
    ]
    for kind, ids in (("person uuid", [held["person_id"]]), ("face uuid", held["face_ids"])):
        for value in ids:
            tokens += [
                Telltale(kind, str(value).encode()),
                Telltale(kind, value.hex.encode()),
                Telltale(kind, value.bytes),
            ]
    tokens += [Telltale("image sha256", sha.encode()) for sha in held["sha256"]]
    for vector in held["vectors"]:
        unit = np.asarray(vector, dtype=np.float32)
        tokens += [
            Telltale("vector f32", unit.astype("<f4").tobytes()),
            Telltale("vector f32", unit.astype("<f4").tobytes()[:32]),  # a prefix: chunked storage
            Telltale("vector f32", unit.astype(">f4").tobytes()),
            Telltale("vector cbor", b"".join(b"\xfa" + struct.pack(">f", x) for x in unit[:16])),
        ]
    return tokens


def scan(store: Store, tokens: list[Telltale]) -> set[tuple[str, str]]:
    """(kind, where) for every file under the data dir, and every SQL table, that holds a telltale."""
    hits: set[tuple[str, str]] = set()
    for path in sorted(p for p in store.data_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        place = str(path.relative_to(store.data_dir))
        hits |= {(t.kind, place) for t in tokens if t.value in data}
    for table, data in table_texts(store).items():
        hits |= {(t.kind, f"table {table}") for t in tokens if t.value in data}
    return hits


def table_texts(store: Store) -> dict[str, bytes]:
    """Each table's rows as text, to name the table that still holds a telltale."""
    engine = sql_engine(store.sql_url)
    texts: dict[str, bytes] = {}
    try:
        with engine.connect() as conn:
            for table in inspect(engine).get_table_names():
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
                texts[table] = "\n".join(
                    " ".join(str(v) + " " + (v.hex if isinstance(v, uuid.UUID) else "") for v in r) for r in rows
                ).encode()
    finally:
        engine.dispose()
    return texts


# ---------------------------------------------------------------- bad input


@dataclass(frozen=True)
class BadCase:
    row: str  # the row it counts in: "bad input", "bad settings", ...
    backends: tuple[str, ...]
    run: Callable[[BadInputs], Case]


BAD_CASES: list[BadCase] = []


def bad_case(
    row: str = "bad input", backends: tuple[str, ...] = BOTH
) -> Callable[[Callable[[BadInputs], Case]], Callable[[BadInputs], Case]]:
    """Register a bad-input case (a BadInputs method or a function of one) for `row` on `backends`."""

    def register(run: Callable[[BadInputs], Case]) -> Callable[[BadInputs], Case]:
        BAD_CASES.append(BadCase(row, backends, run))
        return run

    return register


class BadInputs:
    """Issue 11's bad-input list, one Case each, run against a store that holds the clean run."""

    def __init__(self, store: Store, root: Path, spare: Spare, truth: Truth) -> None:
        self.store, self.spare, self.truth = store, spare, truth
        self.root = Path(tempfile.mkdtemp(prefix=f"bad-{store.backend}-", dir=root))
        self.junk = self._junk()

    def _junk(self) -> dict[str, Path]:
        folder = self.root / "junk"
        folder.mkdir()
        good = Path(self.truth.enrolled_paths[0]).read_bytes()
        junk = {
            "missing": folder / "missing.jpg",
            "corrupt": folder / "corrupt.jpg",
            "empty": folder / "empty.jpg",
            "text": folder / "notes.jpg",
        }
        junk["corrupt"].write_bytes(good[: len(good) // 3])
        junk["empty"].write_bytes(b"")
        junk["text"].write_text("not an image\n")
        return junk

    def _case(self, name: str) -> Case:
        return Case(self.store.backend, name)

    def _one_line(self, case: Case, result: Result, *names: str) -> None:
        lines = result.error_lines
        case.check(len(lines) == 1, f"expected one stderr line, got {len(lines)}: {result.describe()}")
        case.check(not result.crashed, f"an unexpected exception, not a refusal: {result.describe()}")
        for name in names:
            case.check(any(name in line for line in lines), f"no stderr line names {name!r}")

    def _bad_files(self) -> list[Path]:
        return [self.junk["missing"], self.junk["corrupt"], self.junk["empty"], self.junk["text"]]

    def _count(self, sql: str, **params: Any) -> int:
        engine = sql_engine(self.store.sql_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).scalar() or 0
        finally:
            engine.dispose()

    def _report(self, path: Path) -> dict[str, tuple[str, str]]:
        """Report rows by file name: (outcome, reason)."""
        if not path.is_file():
            return {}
        with path.open(newline="") as handle:
            return {Path(r["source_path"]).name: (r["outcome"], r["reason"]) for r in csv.DictReader(handle)}

    @bad_case()
    def search_files(self) -> Case:
        case = self._case("search: unreadable images beside a good one")
        good = self.truth.enrolled_paths[0]
        result = cli(self.store, "search", good, *map(str, self._bad_files()), "--json")
        data = result.json() or {}
        case.check(result.rc == 1, f"exit {result.rc}, expected 1")
        case.check([r.get("image") for r in data.get("results", [])] == [good], "the good image has no result")
        errors = {e.get("image"): e.get("error", "") for e in data.get("errors", [])}
        for bad in self._bad_files():
            case.check(bad.name in errors.get(str(bad), ""), f"no error entry naming {bad.name}")
        case.check(not result.crashed, f"an unexpected exception: {result.describe()}")
        return case

    @bad_case()
    def detect_files(self) -> Case:
        case = self._case("faces detect: unreadable images beside a good one")
        good = self.truth.enrolled_paths[1]
        result = cli(self.store, "faces", "detect", good, *map(str, self._bad_files()), "--json")
        data = result.json() or []
        case.check(result.rc == 1, f"exit {result.rc}, expected 1")
        case.check(len(data) == 5 and bool(data[0].get("faces")), "the good image's faces are not listed first")
        for entry, bad in zip(data[1:], self._bad_files()):
            case.check(bool(entry.get("error")), f"no error for {bad.name}")
        case.check(not result.crashed, f"an unexpected exception: {result.describe()}")
        return case

    @bad_case()
    def enroll_person_files(self) -> Case:
        case = self._case("enroll --person: unreadable images beside good ones")
        good = self._copies("person", self.spare.take(2))
        report = self.root / "person.csv"
        result = cli(
            self.store,
            "enroll",
            "--person",
            f"BAD-{self.store.backend}-P",
            *map(str, good),
            *map(str, self._bad_files()),
            "--report",
            str(report),
            "--json",
        )
        case.check(result.rc == 5, f"exit {result.rc}, expected 5 (some failed): {result.describe()}")
        rows = self._report(report)
        for path in good:
            case.check(rows.get(path.name, ("?",))[0] in ("enrolled", "rejected"), f"{path.name} not processed")
        for bad in self._bad_files():
            case.check(rows.get(bad.name, ("?",))[0] == "failed", f"{bad.name} has no failed row")
        return case

    @bad_case()
    def enroll_dir_entries(self) -> Case:
        case = self._case("enroll DIR: every entry reported (symlink, FIFO, junk)")
        folder = self.root / "entries"
        good = self._copies("entries/A", self.spare.take(1)) + self._copies("entries/B", self.spare.take(1))
        shutil.copy(self.junk["corrupt"], folder / "A" / "corrupt.jpg")
        (folder / "A" / "empty.jpg").write_bytes(b"")
        (folder / "B" / "dangling.jpg").symlink_to(folder / "no-such-file.jpg")
        os.mkfifo(folder / "B" / "fifo.jpg")
        report = self.root / "entries.csv"
        result = cli(self.store, "enroll", str(folder), "--report", str(report), "--json", timeout=300)
        rows = self._report(report)
        case.check(result.rc == 5, f"{result.describe()}, expected exit 5")
        for path in good:
            case.check(rows.get(path.name, ("?",))[0] in ("enrolled", "rejected"), f"{path.name} not processed")
        for bad in ("corrupt.jpg", "empty.jpg", "dangling.jpg", "fifo.jpg"):
            case.check(rows.get(bad, ("?",))[0] in ("failed", "skipped"), f"{bad} has no failed/skipped row")
        return case

    @bad_case()
    def manifest_long_id(self) -> Case:
        case = self._case("manifest: a 500-char id fails only its row")
        photos = self._copies("manifest", self.spare.take(3))
        ids = [f"BAD-{self.store.backend}-M1", "x" * 500, f"BAD-{self.store.backend}-M3"]
        manifest = self.root / "manifest" / "manifest.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "external_id"])
            writer.writerows([p.name, i] for p, i in zip(photos, ids))
        report = self.root / "manifest.csv"
        result = cli(self.store, "enroll", "--manifest", str(manifest), "--report", str(report), "--json")
        rows = self._report(report)
        case.check(result.rc == 5, f"{result.describe()}, expected exit 5")
        case.check(rows.get(photos[1].name, ("?",))[0] == "failed", "the 500-char row has no failed row")
        for path in (photos[0], photos[2]):
            case.check(rows.get(path.name, ("?",))[0] in ("enrolled", "rejected"), f"{path.name} not processed")
        case.check(
            self._count("SELECT count(*) FROM persons WHERE length(external_id) > 255") == 0,
            "a person with a 500-char id was stored",
        )
        return case

    @bad_case()
    def report_missing_folder(self) -> Case:
        case = self._case("--report /no/such/dir/r.csv refused before work")
        folder = self.root / "report"
        photos = self._copies("report/R", self.spare.take(2))
        result = cli(self.store, "enroll", str(folder), "--report", "/no/such/dir/r.csv")
        case.check(result.rc in (1, 2), f"exit {result.rc}, expected 1 or 2")
        self._one_line(case, result, "/no/such/dir")
        queued = self._jobs_for(photos)
        case.check(queued == 0, f"{queued} jobs were queued or run before the refusal")
        return case

    def _jobs_for(self, photos: list[Path]) -> int:
        return sum(self._count("SELECT count(*) FROM jobs WHERE source_path = :p", p=str(p.resolve())) for p in photos)

    @bad_case()
    def threshold_values(self) -> Case:
        # Decision scores run from -1 to a little over 2 (a cosine plus a margin); 2 and 3 are accepted.
        case = self._case("search --threshold nan/inf/-2/4 refused")
        good = self.truth.enrolled_paths[0]
        before = self._count("SELECT count(*) FROM search_events")
        for value in ("nan", "inf", "-2", "4"):
            result = cli(self.store, "search", good, "--threshold", value)
            case.check(result.rc in (1, 2), f"--threshold {value}: exit {result.rc}, expected 1 or 2")
            lines = result.error_lines
            case.check(
                len(lines) == 1 and "threshold" in lines[0].lower() and not result.crashed,
                f"--threshold {value}: not a one-line refusal naming the threshold: {result.describe()}",
            )
        case.check(self._count("SELECT count(*) FROM search_events") == before, "a refused search was logged")
        return case

    @bad_case()
    def read_only_empty(self) -> Case:
        case = self._case("read-only commands on an empty store create nothing")
        empty = self.root / "empty-data"
        commands = [
            ["version"],
            ["config", "show"],
            ["person", "list"],
            ["person", "show", "nobody"],
            ["jobs", "list"],
            ["searches", "list"],
            ["models", "list"],
            ["audit", "nobody"],
        ]
        with fresh_database() if self.store.database_url else _nothing() as url:
            store = Store(self.store.backend, empty, url)
            for args in commands:
                result = cli(store, *args)
                case.check(
                    not result.crashed and len(result.error_lines) <= 1, f"{' '.join(args)}: {result.describe()}"
                )
                if empty.exists():
                    case.check(
                        False, f"`identity {' '.join(args)}` created {sorted(p.name for p in empty.rglob('*'))[:4]}"
                    )
                    shutil.rmtree(empty)
            if url:
                engine = sql_engine(url)
                tables = inspect(engine).get_table_names()
                engine.dispose()
                case.check(not tables, f"tables created in the empty database: {tables[:4]}")
        return case

    @bad_case()
    def other_vector_store(self) -> Case:
        case = self._case("same database, another vector store: refused")
        other = self.root / "other-data"
        env = Store(self.store.backend, other, self.store.sql_url).env()
        result = cli(self.store, "search", self.truth.enrolled_paths[0], "--json", env=env)
        case.check(result.rc in (1, 4), f"exit {result.rc}, expected 1 or 4 (refused)")
        self._one_line(case, result)
        vectors = other / "vectors"
        case.check(not vectors.exists() or not any(vectors.iterdir()), "a vector store was created in the other dir")
        return case

    @bad_case()
    def jobs_cancel(self) -> Case:
        case = self._case("jobs cancel: a cancelled batch is never processed")
        folder = self.root / "cancel"
        photos = self._copies("cancel/C", self.spare.take(2))
        queued = cli(self.store, "enroll", str(folder), "--queue-only", "--json")
        batch = (queued.json() or {}).get("batch")
        case.check(queued.rc == 0 and bool(batch), f"enroll --queue-only: {queued.describe()}")
        if not batch:
            return case
        cancel = cli(self.store, "jobs", "cancel", "--batch", batch)
        case.check(cancel.rc == 0, f"jobs cancel --batch: {cancel.describe()}")
        cli(self.store, "worker", "--drain", "--workers", "1")
        done = sum(
            self._count("SELECT count(*) FROM jobs WHERE source_path = :p AND outcome IS NOT NULL", p=str(p.resolve()))
            for p in photos
        )
        case.check(done == 0, f"{done} cancelled jobs were processed")
        return case

    @bad_case(backends=("postgres",))
    def postgres_scheme(self) -> Case:
        case = self._case("postgres:// URL accepted")
        url = "postgres://" + self.store.sql_url.split("://", 1)[1]
        result = cli(self.store, "person", "list", "--json", env=self.store.env(IDENTITY_DATABASE_URL=url))
        case.check(
            result.rc == 0 and isinstance(result.json(), list) and len(result.json()) > 0,
            f"person list: {result.describe()}",
        )
        return case

    @bad_case(backends=("postgres",))
    def bad_ports(self) -> Case:
        case = self._case("bad port in the database URL refused with one line")
        for port in ("99999", "abc"):
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            result = cli(self.store, "person", "list", env=self.store.env(IDENTITY_DATABASE_URL=url), timeout=60)
            case.check(result.rc in (1, 4), f"port {port}: exit {result.rc}")
            lines = result.error_lines
            case.check(
                len(lines) == 1 and "port" in lines[0].lower() and not result.crashed,
                f"port {port}: not a one-line refusal naming the port: {result.describe()}",
            )
        return case

    @bad_case(backends=("sqlite",))
    def sqlite_missing_folder(self) -> Case:
        case = self._case("sqlite path in a missing folder refused with one line")
        missing = self.root / "no" / "such" / "dir"
        env = self.store.env(IDENTITY_DATABASE_URL=f"sqlite:///{missing / 'identity.db'}")
        result = cli(self.store, "person", "list", env=env)
        case.check(result.rc in (1, 4), f"exit {result.rc}, expected 1 or 4")
        self._one_line(case, result, str(missing))
        case.check(not missing.exists(), "the missing folder was created")
        return case

    # ---- issue 21 item 6: inputs that stopped whole runs

    def _rows_by(self, report: Path, key: str) -> dict[str, dict[str, str]]:
        if not report.is_file():
            return {}
        with report.open(newline="") as handle:
            return {r[key]: r for r in csv.DictReader(handle)}

    @bad_case()
    def names_not_utf8(self) -> Case:
        from identity.pathnames import path_text

        case = self._case("enroll DIR and search: file and folder names that are not UTF-8")
        folder = self.root / "odd"
        [good] = self._copies(f"odd/BAD-{self.store.backend}-V", self.spare.take(1))
        odd_dir = os.fsdecode(os.fsencode(folder) + f"/BAD-{self.store.backend}-U".encode() + b"\xff")
        os.makedirs(odd_dir)
        odd = Path(odd_dir) / os.fsdecode(b"x\xff.jpg")
        shutil.copy(self.spare.take(1)[0], odd)
        report = self.root / "odd.csv"
        result = cli(self.store, "enroll", str(folder), "--report", str(report), "--json")
        case.check(result.rc == 0 and not result.crashed, f"enroll: {result.describe()}, expected exit 0")
        rows = self._rows_by(report, "source_path")
        for path in (good, odd):
            outcome = rows.get(path_text(path), {}).get("outcome")
            case.check(outcome in ("enrolled", "rejected"), f"{path_text(path)}: {outcome or 'no report row'}")
        searched = cli(self.store, "search", str(odd), "--json")
        images = [r.get("image") for r in (searched.json() or {}).get("results", [])]
        case.check(
            searched.rc in (0, 3) and images == [path_text(odd)], f"search: {searched.describe()}, images {images}"
        )
        return case

    def _manifest_case(self, name: str, middle: str, reason: str, encoding: str = "utf-8") -> Case:
        """A three-row manifest whose middle row (line 3) is bad: that row fails with `reason`, the others run."""
        case = self._case(name)
        slug = name.split(":")[1].strip().split()[0]
        photos = self._copies(f"manifest-{slug}", self.spare.take(2))
        manifest = self.root / f"manifest-{slug}" / "people.csv"
        prefix = f"BAD-{self.store.backend}-{slug}"
        manifest.write_bytes(
            (f"path,external_id,display_name\n{photos[0]},{prefix}-1,\n{middle}\n{photos[1]},{prefix}-3,\n").encode(
                encoding
            )
        )
        report = self.root / f"manifest-{slug}.csv"
        result = cli(self.store, "enroll", "--manifest", str(manifest), "--report", str(report), "--json")
        case.check(result.rc == 5 and not result.crashed, f"{result.describe()}, expected exit 5")
        rows = self._rows_by(report, "named_by")
        case.check(
            rows.get("people.csv:3", {}).get("reason") == f"people.csv:3: {reason}",
            f"line 3: {rows.get('people.csv:3', {}).get('reason')!r}, expected 'people.csv:3: {reason}'",
        )
        for line in ("people.csv:2", "people.csv:4"):
            case.check(rows.get(line, {}).get("outcome") in ("enrolled", "rejected"), f"{line} not processed")
        return case

    @bad_case()
    def manifest_symlink_loop(self) -> Case:
        loop = self.root / "loop.jpg"
        loop.symlink_to(loop)
        return self._manifest_case(
            "manifest: loop row (a symbolic link loop) fails only its row",
            f"{loop},BAD-{self.store.backend}-loop-2,",
            f"{loop}: symbolic link loop",
        )

    @bad_case()
    def manifest_nul(self) -> Case:
        return self._manifest_case(
            "manifest: nul in a display_name fails only its row",
            f"{self.spare.take(1)[0]},BAD-{self.store.backend}-nul-2,Nul\0name",
            "column display_name contains a NUL character",
        )

    @bad_case()
    def manifest_latin1(self) -> Case:
        case = self._case("manifest in Latin-1: read with a warning naming the file")
        [photo] = self._copies("latin", self.spare.take(1))
        manifest = self.root / "latin" / "latin.csv"
        external_id = f"BAD-{self.store.backend}-latin"
        manifest.write_bytes(f"path,external_id,display_name\n{photo},{external_id},José\n".encode("latin-1"))
        result = cli(self.store, "enroll", "--manifest", str(manifest), "--json")
        case.check(result.rc == 0 and not result.crashed, f"{result.describe()}, expected exit 0")
        case.check(
            f"warning: {manifest}: not UTF-8" in " ".join(result.err.split()),  # a long line may wrap
            f"no warning naming {manifest.name}: {result.describe()}",
        )
        shown = cli(self.store, "person", "show", external_id, "--json").json() or {}
        case.check(shown.get("display_name") == "José", f"display_name {shown.get('display_name')!r}")
        return case

    def _copies_folder(self) -> tuple[Path, Path, Path]:
        """Two persons' photos, one of them twice in its folder: (folder, first, copy)."""
        folder = self.root / "copies"
        if not folder.exists():
            [first] = self._copies(f"copies/BAD-{self.store.backend}-D1", self.spare.take(1))
            self._copies(f"copies/BAD-{self.store.backend}-D2", self.spare.take(1))
            shutil.copy(first, first.with_name("zz_copy.jpg"))  # sorts after the first
        first = next(p for p in (folder / f"BAD-{self.store.backend}-D1").iterdir() if p.name != "zz_copy.jpg")
        return folder, first, first.with_name("zz_copy.jpg")

    @bad_case()
    def cluster_copies(self) -> Case:
        case = self._case("cluster DIR: a folder with two copies of one photo")
        folder, first, copy = self._copies_folder()
        result = cli(self.store, "cluster", str(folder), "--workers", "1", "--json")
        run = result.json() or {}
        case.check(result.rc == 0 and not result.crashed, f"{result.describe()}, expected exit 0")
        case.check(
            run.get("duplicates") == [{"path": str(copy), "duplicate_of": str(first)}],
            f"duplicates {run.get('duplicates')}",
        )
        groups = run.get("clusters", []) + run.get("singletons", [])
        ids = [c.get("cluster_id") for c in groups]
        faces = [f.get("source_path") for c in groups for f in c.get("faces", [])]
        case.check(
            len(ids) == len(set(ids)) and run.get("faces") == 2 and str(copy) not in faces,
            f"cluster ids {ids}, faces {faces}",
        )
        return case

    @bad_case()
    def enroll_copies(self) -> Case:
        case = self._case("enroll DIR: a folder with two copies of one photo")
        folder, first, copy = self._copies_folder()
        result = cli(self.store, "enroll", str(folder), "--json")
        run = result.json() or {}
        case.check(result.rc == 0 and not result.crashed, f"{result.describe()}, expected exit 0")
        case.check(
            (run.get("counts") or {}).get("duplicate") == 1
            and run.get("duplicates") == [{"path": str(copy), "duplicate_of": str(first)}],
            f"counts {run.get('counts')}, duplicates {run.get('duplicates')}",
        )
        faces = self._count(
            "SELECT count(*) FROM faces f JOIN persons p ON p.id = f.person_id WHERE p.external_id = :e",
            e=f"BAD-{self.store.backend}-D1",
        )
        case.check(faces == 1, f"{faces} faces for the photo and its copy")
        return case

    @bad_case()
    def search_copies(self) -> Case:
        case = self._case("search: a photo and its copy searched once")
        _, first, copy = self._copies_folder()
        result = cli(self.store, "search", str(first), str(copy), "--json")
        images = [r.get("image") for r in (result.json() or {}).get("results", [])]
        case.check(result.rc in (0, 3) and not result.crashed, f"{result.describe()}, expected exit 0")
        case.check(images == [str(first)], f"results for {images}, expected the first path only")
        return case

    def bad_setting(self, name: str, env: dict[str, str], toml: str | None) -> Case:
        given = " ".join(f"{k}={v}" for k, v in env.items()) or (toml or "").strip().replace("\n", " ")
        case = self._case(f"bad setting {given}")
        folder = self.root / "settings"
        photos = list(folder.rglob("*.jpg")) or self._copies("settings/S", self.spare.take(2))
        if toml is not None:
            config = self.root / f"config-{len(list(self.root.glob('config-*')))}.toml"
            config.write_text(toml)
            env = {**env, "IDENTITY_CONFIG": str(config)}
        result = cli(self.store, "enroll", str(folder), "--json", env=self.store.env(**env))
        case.check(result.rc == 1, f"exit {result.rc}, expected 1")
        self._one_line(case, result, name)
        error = result.json()
        case.check(
            isinstance(error, dict) and error.get("error_type") == "ConfigError",
            f"no ConfigError JSON on stdout: {result.out[:120]!r}",
        )
        queued = self._jobs_for(photos)
        case.check(queued == 0, f"{queued} jobs were queued or run before the refusal")
        return case

    def _copies(self, sub: str, photos: list[Path]) -> list[Path]:
        target = self.root / sub
        target.mkdir(parents=True, exist_ok=True)
        out = []
        for photo in photos:
            out.append(target / photo.name)
            shutil.copy(photo, out[-1])
        return out


# ---------------------------------------------------------------- bad settings (issue 21 item 9)

# (the setting as the error line must name it, environment, TOML file text or None)
BAD_SETTINGS: list[tuple[str, dict[str, str], str | None]] = [
    ("IDENTITY_ENROLL__CHUNK_SIZE", {"IDENTITY_ENROLL__CHUNK_SIZE": "0"}, None),  # queued nothing, exit 0
    ("IDENTITY_FACES__UPSAMPLE", {"IDENTITY_FACES__UPSAMPLE": "-1"}, None),  # TypeError
    ("IDENTITY_VECTORS__SEARCH_EF", {"IDENTITY_VECTORS__SEARCH_EF": "-1"}, None),  # OverflowError
    ("IDENTITY_VECTORS__HNSW_M", {"IDENTITY_VECTORS__HNSW_M": "-1"}, None),  # OverflowError
    ("IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS", {"IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS": "nan"}, None),
    ("IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS", {"IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS": "1e12"}, None),
    ("IDENTITY_FACES__MIN_BLUR", {"IDENTITY_FACES__MIN_BLUR": "inf"}, None),  # rejected every photo
    ("faces.upsample", {}, "[faces]\nupsample = 1.7\n"),  # became 1
]


def _setting_case(name: str, env: dict[str, str], toml: str | None) -> Callable[[BadInputs], Case]:
    def run(suite: BadInputs) -> Case:
        return suite.bad_setting(name, env, toml)

    run.__name__ = f"bad_setting {name}"
    return run


for _name, _env, _toml in BAD_SETTINGS:
    bad_case("bad settings")(_setting_case(_name, _env, _toml))


@trial("settings")
def bad_settings(ctx: Context) -> Row:
    return case_row(ctx, "bad settings")


# ---------------------------------------------------------------- worker processes (issue 21 item 8)

WORKER_GRACE = 5.0  # seconds the pool's processes get to notice their parent died


@trial("processes")
def worker_processes(ctx: Context) -> Row:
    """`identity enroll --workers 2`: SIGKILL of the main process alone (not its group) while the
    workers run, twice, then a run to its end: no worker or resource tracker may be left."""
    row = Row("enroll's worker processes", ctx.backend)
    with fresh_store(ctx.backend, ctx.root, "processes") as store:
        for _ in range(2):
            landed, left = kill_parent_only(store, ctx.dataset)
            row.trials += landed
            if left:
                row.fail(
                    f"{len(left)} processes alive {WORKER_GRACE:.0f} s after the parent's SIGKILL: "
                    + ", ".join(sorted(set(left.values()))),
                    len(left),
                )
        folder = copy_dataset(ctx.spare.take(4), ctx.root / f"processes-{ctx.backend}")
        left = normal_run_leftovers(store, folder)
        row.trials += 1
        if left:
            row.fail(
                f"{len(left)} processes left after a normal exit: {', '.join(sorted(set(left.values())))}", len(left)
            )
    row.notes.insert(0, f"parent SIGKILLed while its workers ran: {row.trials - 1} of 2 landed; 1 normal exit")
    return row


def kill_parent_only(store: Store, dataset: Path) -> tuple[bool, dict[int, str]]:
    """SIGKILL `identity enroll` itself once its workers are busy;
    what of its children is alive WORKER_GRACE s later."""
    proc = start(store, "enroll", str(dataset), "--workers", "2")
    engine = sql_engine(store.sql_url)
    try:
        done = wait_for_done(engine, 0, proc)
        wait_for_done(engine, done + 2, proc)  # the workers have loaded their models and are at work
    finally:
        engine.dispose()
    below = process_children(proc.pid)
    if proc.poll() is not None or not below:
        return False, {}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.perf_counter() + WORKER_GRACE
    while (left := running(below)) and time.perf_counter() < deadline:
        time.sleep(0.1)
    sigkill(proc)  # the harness cleans up what the CLI left (same process group)
    return True, left


def normal_run_leftovers(store: Store, folder: Path) -> dict[int, str]:
    """Children seen during a run to completion that still exist (running or unreaped) after it."""
    proc = start(store, "enroll", str(folder), "--workers", "2")
    seen: dict[int, tuple[str, str]] = {}
    while proc.poll() is None:
        seen.update(process_children(proc.pid))
        time.sleep(0.05)
    time.sleep(1.0)
    return {pid: what for pid, (start_time, what) in seen.items() if proc_state(pid, start_time) is not None}


def process_children(pid: int) -> dict[int, tuple[str, str]]:
    """{pid: (start time, what)} of the processes whose parent is `pid`, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid:
                what = (
                    "resource tracker"
                    if b"resource_tracker" in cmdline
                    else "worker"
                    if b"spawn_main" in cmdline
                    else "other"
                )
                found[int(entry.name)] = (fields[19], what)
    return found


def proc_state(pid: int, start_time: str) -> str | None:
    """The state letter of process `pid` if it is still the one that started at `start_time` (Z: unreaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0] if fields[19] == start_time else None


def running(processes: dict[int, tuple[str, str]]) -> dict[int, str]:
    """Those of `processes` still running (a zombie has ended: reaping it is its new parent's job)."""
    return {
        pid: what for pid, (start_time, what) in processes.items() if proc_state(pid, start_time) not in (None, "Z")
    }


# ---------------------------------------------------------------- binding, first use, damaged stores (issue 21 items
# 3-5, 7, 10)
#
# These rows damage a store on purpose, so they share a small one per backend (two persons, two photos each),
# not the clean run's: each row leaves it repaired (doctor clean) for the next, and the damaged-stores row,
# whose truncated SQLite file cannot be repaired, comes last.


@dataclass
class Small:
    store: Store
    people: dict[str, list[Path]]  # external id -> enrolled photos


def small_store(ctx: Context) -> Small | None:
    """The backend's small store, enrolled on first use (None, with the reason in ctx.shared, if that failed)."""
    if "small" not in ctx.shared:
        store = ctx.stack.enter_context(fresh_store(ctx.backend, ctx.root, "small"))
        folder = ctx.root / f"small-{ctx.backend}"
        people = {}
        for _ in range(2):
            photos = ctx.spare.person_with(2)
            copy_dataset(photos, folder)
            people[photos[0].parent.name] = [folder / p.parent.name / p.name for p in photos]
        enrolled = cli(store, "enroll", str(folder), "--workers", "1", "--json")
        ok = enrolled.rc == 0 and snapshot(store).indexed == 4
        ctx.shared["small"] = Small(store, people) if ok else f"small store: enroll {enrolled.describe()}"
    small = ctx.shared["small"]
    return small if isinstance(small, Small) else None


def small_row(ctx: Context, kind: str) -> tuple[Row, Small | None]:
    row = Row(kind, ctx.backend)
    small = small_store(ctx)
    if small is None:
        row.fail(ctx.shared["small"])
    return row, small


def refused(row: Row, what: str, result: Result, code: int, error_type: str, *needles: str) -> dict[str, Any]:
    """Check a refusal: exit `code`, one stderr line, the `error_type` JSON object on stdout whose message
    names each needle; returns that object ({} if none)."""
    error = result.json() if isinstance(result.json(), dict) else {}
    if result.rc != code:
        row.fail(f"{what}: {result.describe()}, expected exit {code}")
    if len(result.error_lines) != 1 or result.crashed:
        row.fail(f"{what}: not one stderr line: {result.describe()}")
    if error.get("error_type") != error_type:
        row.fail(f"{what}: no {error_type} JSON on stdout: {result.out[:160]!r}")
    for needle in needles:
        if needle not in str(error.get("error", "")):
            row.fail(f"{what}: the error does not name {needle!r}")
    return error


def repaired_clean(store: Store, row: Row, what: str, *args: str) -> dict[str, Any]:
    """`doctor --repair ARGS --json` (exit 0 or 1: it found something), then a plain doctor must be clean."""
    result = cli(store, "doctor", "--repair", *args, "--json")
    report = result.json() if isinstance(result.json(), dict) else {}
    if result.rc not in (0, 1) or not report:
        row.fail(f"{what}: doctor --repair: {result.describe()}")
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(f"{what}: after the repair, {why}")
    return report


def expect_vectors(store: Store, row: Row, what: str, expected: int) -> None:
    snap = snapshot(store)
    for problem in invariant_problems(snap):
        row.fail(f"{what}: {problem}")
    if snap.vectors != expected:
        row.fail(f"{what}: {snap.vectors} face vectors, expected {expected}")


@trial("binding")
def wrong_database(ctx: Context) -> Row:
    """A populated data dir with an empty database, then with another deployment's: `doctor --repair` refused
    (exit 4, StoreMismatch) before it creates anything; the vectors stay and the right database finds it clean."""
    row, small = small_row(ctx, "wrong/empty database + data dir")
    if small is None:
        return row
    store, before = small.store, snapshot(small.store).vectors
    for name in ("empty", "other"):
        with fresh_store(ctx.backend, ctx.root, f"{name}-db") as other:
            if name == "other" and cli(other, "init", "--json").rc != 0:
                row.fail("set-up: init of the other deployment failed")
            paired = Store(ctx.backend, store.data_dir, other.sql_url)
            result = cli(paired, "doctor", "--repair", "--json")
            refused(row, f"{name} database", result, 4, "StoreMismatch", "IDENTITY_DATABASE_URL")
            if name == "empty" and created_anything(other):
                row.fail("the empty database got a file or tables before the refusal")
        row.trials += 1
        expect_vectors(store, row, f"after the {name} database", before)
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    row.notes.insert(
        0, f"doctor --repair with an empty and with another deployment's database: exit 4, {before} vectors kept"
    )
    return row


@trial("binding")
def repair_limit(ctx: Context) -> Row:
    """Orphan vectors beyond doctor's limit (max(1%, 10)): `--repair` refused (exit 1, RepairRefused naming
    --force), nothing deleted; `--repair --force` deletes exactly them; doctor clean after."""
    row, small = small_row(ctx, "doctor --repair deletion limit")
    if small is None:
        return row
    store, before = small.store, snapshot(small.store).vectors
    orphans = max(10, before // 100) + 1
    add_orphans(store, orphans)
    refusal = refused(row, "--repair", cli(store, "doctor", "--repair", "--json"), 1, "RepairRefused", "--force")
    if refusal.get("vectors_to_delete") != orphans:
        row.fail(f"vectors_to_delete {refusal.get('vectors_to_delete')}, expected {orphans}")
    if snapshot(store).vectors != before + orphans:
        row.fail("the refused repair deleted vectors")
    row.trials += 1
    report = repaired_clean(store, row, "--force", "--force")
    if (report.get("repaired") or {}).get("orphan_vectors_deleted") != orphans or report.get("clean") is not False:
        row.fail(f"--force: {report.get('repaired')}, clean {report.get('clean')}")
    expect_vectors(store, row, "after --force", before)
    row.trials += 1
    row.notes.insert(
        0,
        f"{orphans} orphans among {before} vectors (limit {refusal.get('limit')}): refused, then deleted with --force",
    )
    return row


def created_anything(store: Store) -> bool:
    """Whether an empty store's database now exists (SQLite) or holds tables (Postgres)."""
    if store.database_url is None:
        return (store.data_dir / "identity.db").exists()
    engine = sql_engine(store.sql_url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def add_orphans(store: Store, count: int) -> None:
    """Random unit vectors with no face row, written straight into the faces collection."""
    from identity.store.vectors import VectorPoint, open_vector_index

    [(name, version, dim)] = sql_rows(store, "SELECT name, version, dim FROM models")
    rng = np.random.default_rng(0)
    points = []
    for _ in range(count):
        vector = rng.normal(size=dim).astype(np.float32)
        points.append(VectorPoint(uuid.uuid4(), uuid.uuid4(), vector / np.linalg.norm(vector)))
    with open_vector_index(store.settings(), f"{name}@{version}", dim) as index:
        index.upsert(points)


def sql_rows(store: Store, sql: str, **params: Any) -> list[tuple]:
    engine = sql_engine(store.sql_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


FIRST_USE_ROUNDS = 3


@trial("binding")
def first_use_race(ctx: Context) -> Row:
    """Two first commands at once on a fresh store (`init` and `person add`), several rounds: both succeed."""
    row = Row("first-use race", ctx.backend)
    for round_ in range(FIRST_USE_ROUNDS):
        with fresh_store(ctx.backend, ctx.root, f"race{round_}") as store:
            commands = [["init", "--json"], ["person", "add", "--external-id", f"R{round_}", "--json"]]
            procs = [
                subprocess.Popen(
                    [IDENTITY, *args], env=store.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                for args in commands
            ]
            for args, proc in zip(commands, procs):
                _, err = proc.communicate(timeout=TIMEOUT)
                if proc.returncode != 0:
                    row.fail(f"round {round_}: {args[0]} exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
            if count_rows(store, "SELECT count(*) FROM persons") != 1:
                row.fail(f"round {round_}: the person added at once is not stored")
            ok, why = doctor_clean(store)
            if not ok:
                row.fail(f"round {round_}: {why}")
        row.trials += 1
    row.notes.insert(0, "init and person add started together on a fresh store: both exit 0, doctor clean")
    return row


def faces_shard(store: Store) -> Path | None:
    found = [p for p in (store.data_dir / "vectors").glob("faces_*") if ".damaged-" not in p.name and p.is_dir()]
    return found[0] if len(found) == 1 else None


def vector_chunks(store: Store) -> list[Path]:
    shard = faces_shard(store)
    return sorted(shard.glob("segments/*/vector_storage/vectors/chunk_0.mmap")) if shard else []


@trial("health")
def corrupted_vector(ctx: Context) -> Row:
    """One stored face vector's bytes overwritten in the shard's chunk file: search exit 4 (StoreDamaged naming
    doctor), `doctor --deep` finds it, `doctor --deep --repair` re-embeds it from the photo, search right after."""
    row, small = small_row(ctx, "corrupted vector bytes")
    if small is None:
        return row
    store = small.store
    person, photos = next(iter(small.people.items()))
    before = snapshot(store).vectors
    if not overwrite_face_vector(store, person):
        row.fail("set-up: the vector's bytes were not found in any chunk file")
        return row
    row.trials += 1
    refused(row, "search", cli(store, "search", str(photos[0]), "--json"), 4, "StoreDamaged", "identity doctor")
    found = cli(store, "doctor", "--deep", "--json").json() or {}
    if (found.get("integrity") or {}).get("damaged_vectors") != 1 or found.get("clean") is not False:
        row.fail(f"doctor --deep did not find it: {found.get('integrity')}")
    report = repaired_clean(store, row, "repair", "--deep")
    if not (report.get("repaired") or {}).get("faces_reenrolled"):
        row.fail(f"doctor --deep --repair re-enrolled nothing: {report.get('repaired')}")
    expect_vectors(store, row, "after the repair", before)
    searched = cli(store, "search", str(photos[0]), "--json")
    scores = [
        c["score"]
        for r in (searched.json() or {}).get("results", [])
        for f in r.get("faces", [])
        for c in f.get("candidates", [])
    ]
    top = top_candidate(searched)
    if searched.rc != 0 or top != person or not all(-1.001 <= s <= 1.001 for s in scores):
        row.fail(f"search after the repair: {searched.describe()}, top {top}, scores {scores[:3]}")
    row.notes.insert(0, "search exit 4, doctor --deep found 1, --repair re-embedded it, search finds the person")
    return row


def top_candidate(result: Result) -> str | None:
    try:
        return result.json()["results"][0]["faces"][0]["candidates"][0]["person"]["external_id"]
    except (TypeError, KeyError, IndexError):
        return None


def overwrite_face_vector(store: Store, external_id: str) -> bool:
    """Overwrite the first values of one of the person's stored face vectors where its float32 bytes lie."""
    from identity.store.vectors import open_vector_index

    [(name, version, dim)] = sql_rows(store, "SELECT name, version, dim FROM models")
    face_ids = [
        uuid.UUID(str(r[0]))
        for r in sql_rows(
            store,
            "SELECT f.id FROM faces f JOIN persons p ON p.id = f.person_id WHERE p.external_id = :e "
            "AND f.status = 'indexed'",
            e=external_id,
        )
    ]
    with open_vector_index(store.settings(), f"{name}@{version}", dim) as index:
        vector = next(iter(index.vectors(face_ids[:1]).values()))
    needle = np.asarray(vector, dtype=np.float32).tobytes()
    for chunk in vector_chunks(store):
        content = bytearray(chunk.read_bytes())
        at = content.find(needle)
        if at >= 0:
            content[at : at + 16] = np.full(4, 3e18, dtype=np.float32).tobytes()
            chunk.write_bytes(bytes(content))
            return True
    return False


@trial("health")
def disk_almost_full(ctx: Context) -> Row:
    """The store moved to a 48 MB tmpfs (less than one growth step per file kind left): search and enroll end in
    one line and exit 4 (NoSpace), not SIGBUS; moved back, nothing was written and doctor is clean."""
    row, small = small_row(ctx, "disk almost full")
    if small is None:
        return row
    store = small.store
    person, photos = next(iter(small.people.items()))
    before = snapshot(store)
    mount = ctx.root / f"tmpfs-{ctx.backend}"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        row.notes.append(f"not run: cannot mount a tmpfs here ({mounted.stderr.strip()[:80]})")
        return row
    try:
        moved = Store(store.backend, mount / "data", store.database_url)
        move_tree(store.data_dir, moved.data_dir)
        try:
            for args in (["search", str(photos[0])], ["enroll", "--person", person, str(ctx.spare.take(1)[0])]):
                error = refused(row, args[0], cli(moved, *args, "--json"), 4, "NoSpace", "MB free")
                if not error.get("free_bytes", 1) < error.get("needed_bytes", 0):
                    row.fail(f"{args[0]}: free_bytes {error.get('free_bytes')} not below needed_bytes")
                row.trials += 1
        finally:
            move_tree(moved.data_dir, store.data_dir)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    after = snapshot(store)
    if after.indexed != before.indexed or after.vectors != before.vectors:
        row.fail(f"faces/vectors {before.indexed}/{before.vectors} -> {after.indexed}/{after.vectors}")
    ok, why = doctor_clean(store)
    if not ok:
        row.fail(why)
    row.notes.insert(0, "48 MB tmpfs: search and enroll exit 4 (NoSpace, free < needed); moved back, doctor clean")
    return row


def move_tree(source: Path, target: Path) -> None:
    """Move a data dir keeping its sparse files sparse (a moved data dir keeps its binding)."""
    subprocess.run(["cp", "-a", "--sparse=always", str(source), str(target)], check=True)
    shutil.rmtree(source)


@trial("health")
def damaged_stores(ctx: Context) -> Row:
    """A deleted faces shard (search warns; doctor --repair rebuilds), a missing chunk_0.mmap (exit 4 naming the
    shard and doctor --repair, which rebuilds it), and last, on SQLite, a truncated database file (exit 4,
    StoreDamaged naming it and a backup; it cannot be repaired, so this row ends the small store)."""
    row, small = small_row(ctx, "damaged stores")
    if small is None:
        return row
    store = small.store
    person, photos = next(iter(small.people.items()))
    before = snapshot(store).vectors
    deleted_shard(store, row, str(photos[0]), before)
    missing_chunk(store, row, str(photos[0]), before)
    if store.database_url is None:
        truncated_sqlite(store, row, str(photos[0]))
    row.notes.insert(
        0, "deleted faces shard, missing chunk_0.mmap" + (", truncated SQLite" if store.database_url is None else "")
    )
    return row


def deleted_shard(store: Store, row: Row, photo: str, before: int) -> None:
    shard = faces_shard(store)
    if shard is None:
        row.fail("set-up: no faces shard")
        return
    shutil.rmtree(shard)
    row.trials += 1
    searched = cli(store, "search", photo, "--json")
    warnings = [w for r in (searched.json() or {}).get("results", []) for w in r.get("warnings", [])]
    if searched.rc != 0 or not any("vector store holds 0" in w and "doctor --repair" in w for w in warnings):
        row.fail(f"deleted shard: search did not warn: {searched.describe()}, warnings {warnings}")
    report = repaired_clean(store, row, "deleted shard")
    if (report.get("repaired") or {}).get("faces_reenrolled") != before:
        row.fail(f"deleted shard: repaired {report.get('repaired')}, expected {before} faces re-enrolled")
    expect_vectors(store, row, "deleted shard", before)


def missing_chunk(store: Store, row: Row, photo: str, before: int) -> None:
    shard, chunks = faces_shard(store), vector_chunks(store)
    if shard is None or not chunks:
        row.fail("set-up: no chunk_0.mmap in the faces shard")
        return
    for chunk in chunks:
        chunk.unlink()
    row.trials += 1
    refused(
        row,
        "missing chunk: search",
        cli(store, "search", photo, "--json"),
        4,
        "StoreDamaged",
        str(shard),
        "identity doctor --repair",
    )
    report = repaired_clean(store, row, "missing chunk")
    if (report.get("integrity") or {}).get("rebuilt_shards") != [str(shard)]:
        row.fail(f"missing chunk: rebuilt_shards {(report.get('integrity') or {}).get('rebuilt_shards')}")
    if list((store.data_dir / "vectors").glob("*.damaged-*")):
        row.fail("missing chunk: the set-aside shard was left after a full rebuild")
    expect_vectors(store, row, "missing chunk", before)
    if cli(store, "search", photo, "--json").rc != 0:
        row.fail("missing chunk: search after the rebuild failed")


def truncated_sqlite(store: Store, row: Row, photo: str) -> None:
    database = store.data_dir / "identity.db"
    os.truncate(database, database.stat().st_size // 4)
    for args in (["search", photo], ["doctor", "--repair"], ["person", "list"]):
        refused(
            row,
            f"truncated SQLite: {args[0]}",
            cli(store, *args, "--json"),
            4,
            "StoreDamaged",
            str(database),
            "restore it from a backup",
        )
        row.trials += 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@trial("bad")
def bad_input(ctx: Context) -> Row:
    return case_row(ctx, "bad input")


def case_row(ctx: Context, name: str) -> Row:
    """One row for the registered cases of row `name`: each a trial, each failure counted inconsistent."""
    row = Row(name, ctx.backend)
    suite = BadInputs(ctx.clean, ctx.root, ctx.spare, ctx.truth)
    for registered in BAD_CASES:
        if registered.row != name or ctx.backend not in registered.backends:
            continue
        try:
            case = registered.run(suite)
        except Exception as exc:  # noqa: BLE001 - a harness failure is reported as that case failing
            case = Case(ctx.backend, registered.run.__name__, False, [f"harness: {type(exc).__name__}: {exc}"])
        ctx.cases.append(case)
        row.trials += 1
        if not case.passed:
            row.fail(case.name)
    row.notes = [f"{row.trials - row.inconsistent} of {row.trials} cases pass"]
    return row


# ---------------------------------------------------------------- driver


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def timed_row(fn: Callable[[], Row]) -> Row:
    row, seconds = timed(fn)
    row.seconds = seconds
    return row


def run_backend(
    backend: str, args: argparse.Namespace, root: Path, dataset: Path, spare_photos: list[Path], rng: random.Random
) -> tuple[list[Row], list[Case]]:
    """The clean run, then every registered trial of the chosen sections, in registration order."""
    rows: list[Row] = []
    sections = set(args.sections.split(","))
    with fresh_store(backend, root, "clean") as clean, ExitStack() as stack:
        console.print(f"[bold]{backend}[/bold]: clean run of {args.images} images")
        (row, truth), seconds = timed(lambda: clean_run(clean, dataset, args.workers))
        row.seconds = seconds
        rows.append(row)
        if truth is None:
            return rows, []
        ctx = Context(backend, args, root, dataset, clean, truth, Spare(spare_photos), rng, stack)
        for t in TRIALS:
            if t.section in sections and backend in t.backends:
                console.print(f"{backend}: {t.section}: {t.run.__name__}")
                rows.append(timed_row(lambda t=t: t.run(ctx)))
    return rows, ctx.cases


def render(rows: list[Row], cases: list[Case], seconds: float, title: str) -> None:
    out = Console(width=None if sys.stdout.isatty() else 220)
    table = Table(title=title)
    for column in ("trial", "backend", "trials run", "lost", "duplicated", "left inconsistent", "seconds", "note"):
        table.add_column(column, overflow="fold")
    for r in rows:
        mark = "" if r.ok else "[red]"
        table.add_row(
            r.kind,
            r.backend,
            str(r.trials),
            f"{mark}{r.lost}",
            f"{mark}{r.duplicated}",
            f"{mark}{r.inconsistent}",
            f"{r.seconds:.0f}",
            escape("; ".join(r.notes)),
        )
    out.print(table)
    for case in cases:
        status = "[green]pass[/green]" if case.passed else "[red]FAIL[/red]"
        # Names and reasons quote user input ("[faces]" in a TOML case): not rich markup.
        out.print(
            f"{status} {case.backend}: {escape(case.name)}"
            + ("" if case.passed else ": " + escape("; ".join(case.reasons))),
            highlight=False,
        )
    out.print(
        f"total {seconds:.0f} s; " + ("all counts 0" if all(r.ok for r in rows) else "[red]some counts are not 0[/red]")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="processes for the clean run and the bad-input runs")
    parser.add_argument(
        "--sections",
        default=",".join(dict.fromkeys(t.section for t in TRIALS)),
        help="which trials besides the clean run (default: all)",
    )
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if not args.dataset.is_dir():
        console.print(f"skipped: lfw-dev not found at {args.dataset}")
        return 0
    backends = args.backends.split(",")
    skipped = []
    if "postgres" in backends and (why := postgres_available()):
        console.print(f"postgres skipped: {why}")
        backends.remove("postgres")
        skipped.append(Row("skipped", "postgres", notes=[why]))
    rng = random.Random(args.seed)
    started = time.perf_counter()
    rows: list[Row] = skipped
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="identity-faults-") as tmp:
        root = Path(tmp)
        images, spare = pick_images(args.dataset, args.images)
        dataset = copy_dataset(images, root / "dataset")
        for backend in backends:
            more_rows, more_cases = run_backend(backend, args, root, dataset, spare, rng)
            rows += more_rows
            cases += more_cases
    seconds = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [{**asdict(r), "ok": r.ok} for r in rows],
                    "bad_input": [asdict(c) for c in cases],
                    "seconds": round(seconds, 1),
                },
                indent=2,
            )
        )
    else:
        render(rows, cases, seconds, f"reliability: {len(images)} images, {args.kills} kills, seed {args.seed}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
