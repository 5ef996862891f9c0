"""Every `--json` output of an old tree against a new one, on the same store, diffed (issue 24's acceptance).

    python benchmarks/json_outputs.py --old REV [--new PATH_OR_REV] [--out DIR] [--json]

The old tree is checked out with `git worktree add --detach` (removed afterwards); the new one is a
directory (default: this tree) or a revision checked out the same way. Each tree's CLI runs as
`PYTHONPATH=<shim>:<tree> python -c "from identity_cli.main import run; run()"`, where the shim links
`identity_cli` and `identity_migrations` to the tree's `cli/` and `migrations/` (how setuptools installs them).

One store is built with the OLD tree (embedded: SQLite + Qdrant Edge in a temporary data dir): people
from ../shared/datasets/lfw-dev, insightface's t1.jpg, searches, reviews, clusters, keys, an erasure,
queued jobs. Then every command case runs with old and with new, each on its own fresh copy of that
store (restored at the same path: the store's binding refuses a copy elsewhere). Outputs are
normalised (uuids and random tokens numbered by first appearance, timestamps, durations, temp and tree
paths) and compared, with the exit codes. `/openapi.json` is compared too. Exit 1 on any DIFF or error.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
YUNET = REPO.parent / "shared" / "models" / "yunet_n_dynamic.onnx"
CASE_TIMEOUT_S = 240

# --- normalisation -------------------------------------------------------------------------------

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
API_KEY = re.compile(r"\bidk_[0-9a-f]{12}_[A-Za-z0-9_-]+")
# Keys whose value is a fresh random token on every run (not a row id, which a fresh copy repeats).
TOKEN_KEYS = frozenset({"batch", "key_id", "cluster_id"})
# Timings: the value changes with load, only its presence and type are compared.
DURATION_KEYS = frozenset({"seconds", "elapsed"})
DURATION_SUFFIXES = ("_seconds", "_per_second", "_ms")
SETTING_KEYS = frozenset({"lease_seconds", "request_deadline_seconds"})  # `config show`: settings, not timings


class Normaliser:
    """Rewrites one document's volatile parts; one instance per document, so numbering is per output."""

    def __init__(self, paths: dict[str, str] | None = None) -> None:
        # Longest first, so a tree inside the temp dir is named as the tree.
        self.paths = sorted((paths or {}).items(), key=lambda kv: -len(kv[0]))
        self.tokens: dict[str, str] = {}

    def _number(self, kind: str, value: str) -> str:
        if value not in self.tokens:
            self.tokens[value] = f"<{kind}:{sum(1 for t in self.tokens.values() if t.startswith(f'<{kind}:')) + 1}>"
        return self.tokens[value]

    def text(self, s: str) -> str:
        for path, name in self.paths:
            s = s.replace(path, name)
        s = API_KEY.sub(lambda m: self._number("api-key", m.group(0)), s)
        s = UUID.sub(lambda m: self._number("uuid", m.group(0)), s)
        return TIMESTAMP.sub("<time>", s)

    def value(self, v: Any, key: str | None = None) -> Any:
        if isinstance(v, dict):
            return {k: self.value(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x, key) for x in v]
        if key is not None and _is_duration(key) and isinstance(v, (int, float)) and not isinstance(v, bool):
            return "<duration>"
        if isinstance(v, str):
            if key in TOKEN_KEYS:
                return self._number(key, v)
            return self.text(v)
        return v

    def output(self, stdout: str) -> Any:
        """The parsed JSON (one document, or one per line) normalised; else the normalised text."""
        try:
            return self.value(json.loads(stdout))
        except ValueError:
            pass
        lines = [line for line in stdout.splitlines() if line.strip()]
        try:
            return [self.value(json.loads(line)) for line in lines] if lines else ""
        except ValueError:
            return self.text(stdout)


def _is_duration(key: str) -> bool:
    return key not in SETTING_KEYS and (key in DURATION_KEYS or key.endswith(DURATION_SUFFIXES))


def render(doc: Any) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def short_diff(old: str, new: str, lines: int = 30) -> str:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "old", "new", lineterm="", n=2))
    return "\n".join(diff[:lines] + ([f"... ({len(diff) - lines} more lines)"] if len(diff) > lines else []))


# --- trees -----------------------------------------------------------------------------------------


@dataclass
class Tree:
    """A source tree and how to run its CLI with `python`."""

    label: str
    path: Path
    shim: Path
    python: str

    def env(self, data_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        env.update(
            PYTHONPATH=f"{self.shim}{os.pathsep}{self.path}",
            IDENTITY_DATA_DIR=str(data_dir),
            COLUMNS="200",
            NO_COLOR="1",
            PYTHONHASHSEED="0",
        )
        return env

    def python_code(self, code: str, data_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-c", code],
            env=self.env(data_dir),
            cwd=self.shim,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli(self, argv: list[str], data_dir: Path, timeout: float = CASE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return self.python_code(
            f"import sys; sys.argv = ['identity', *{argv!r}]\nfrom identity_cli.main import run; run()",
            data_dir,
            timeout,
        )


def make_shim(tree: Path, shim: Path) -> None:
    shim.mkdir(parents=True)
    (shim / "identity_cli").symlink_to(tree / "cli")
    (shim / "identity_migrations").symlink_to(tree / "migrations")


def checkout(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(where), rev], check=True)
    return where


def remove_checkout(where: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True, check=False
    )
    shutil.rmtree(where, ignore_errors=True)


WHICH = """import json, identity, identity_cli, identity_migrations
print(json.dumps([identity.__file__, identity_cli.__file__, identity_migrations.__file__]))"""


def verify(tree: Tree, scratch: Path) -> list[str]:
    """The modules that actually import, which must all lie in the tree (not an installed copy)."""
    done = tree.python_code(WHICH, scratch)
    if done.returncode != 0:
        raise SystemExit(f"{tree.label}: cannot import the tree at {tree.path}:\n{done.stderr}")
    files = json.loads(done.stdout)
    stray = [f for f in files if not Path(f).resolve().is_relative_to(tree.path.resolve())]
    if stray:
        raise SystemExit(f"{tree.label}: modules import from outside {tree.path}: {stray}")
    return files


COMMANDS = """import json
from typer.main import get_command
from identity_cli.main import app
def walk(cmd, path):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from walk(sub, [*path, name])
    else:
        yield " ".join(path), any("--json" in p.opts for p in cmd.params)
print(json.dumps(dict(walk(get_command(app), []))))"""


def commands(tree: Tree, scratch: Path) -> dict[str, bool]:
    """Every command of the tree's Typer app: path -> whether it accepts --json."""
    done = tree.python_code(COMMANDS, scratch)
    if done.returncode != 0:
        raise SystemExit(f"{tree.label}: cannot list the commands:\n{done.stderr}")
    return json.loads(done.stdout)


OPENAPI = """from identity.api.openapi_snapshot import current_schema, render
print(render(current_schema()), end="")"""


# --- the store and the cases -----------------------------------------------------------------------


@dataclass
class Inputs:
    """Folders of photos (symlinks into lfw-dev) the scenario and cases use."""

    people: Path  # enrolled while building: PERSON/photos
    later: Path  # enrolled by a case
    probes: Path  # unenrolled photos of enrolled people (search, clusters)
    labelled: Path  # eval / calibrate / finetune
    t1: Path  # insightface's group photo (6 faces)
    extra: Path  # one photo for the person who is erased while building


def persons_with(n: int, count: int, skip: int = 0) -> list[str]:
    """`count` lfw-dev people with at least n photos, in name order, after the first `skip` such people."""
    found = [p.name for p in sorted(LFW.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= n]
    return found[skip : skip + count]


def link_photos(dest: Path, person: str, photos: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in photos:
        (dest / name).symlink_to(LFW / person / name)


def make_inputs(root: Path) -> Inputs:
    import insightface  # the group photo ships with it

    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    inputs = Inputs(root / "people", root / "later", root / "probes", root / "labelled", t1, root / "extra")
    for n, person in enumerate(persons_with(4, 12)):  # 12 persons: enough for the normalized decision (11)
        photos = sorted(p.name for p in (LFW / person).iterdir())
        link_photos(inputs.people / person, person, photos[:2])
        if n < 6:
            link_photos(inputs.probes, person, photos[2:4])
    for person in persons_with(2, 3, skip=40):
        link_photos(inputs.later / person, person, sorted(p.name for p in (LFW / person).iterdir())[:2])
    for person in persons_with(3, 8, skip=60):
        link_photos(inputs.labelled / person, person, sorted(p.name for p in (LFW / person).iterdir())[:3])
    extra = persons_with(1, 1, skip=200)[0]
    link_photos(inputs.extra, extra, sorted(p.name for p in (LFW / extra).iterdir())[:1])
    return inputs


def run_ok(tree: Tree, argv: list[str], data: Path) -> Any:
    done = tree.cli([*argv, "--json"], data)
    if done.returncode != 0:
        raise SystemExit(
            f"building the store: identity {' '.join(argv)} exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout)


def build_store(tree: Tree, data: Path, inputs: Inputs) -> dict[str, str]:
    """The store every case starts from, built with `tree`; returns ids the cases refer to."""
    run_ok(tree, ["init"], data)
    run_ok(tree, ["enroll", str(inputs.people), "--workers", "1"], data)
    run_ok(tree, ["person", "add", "--external-id", "crowd", "--name", "Crowd", "--attr", "dept=press"], data)
    run_ok(tree, ["enroll", str(inputs.t1), "--person", "crowd", "--subject", "all", "--workers", "1"], data)
    run_ok(tree, ["person", "update", "crowd", "--attr", "site=north"], data)
    run_ok(tree, ["person", "add", "--external-id", "leaver", "--name", "Leaves Soon"], data)
    run_ok(
        tree,
        ["enroll", str(inputs.extra / next(inputs.extra.iterdir()).name), "--person", "leaver", "--workers", "1"],
        data,
    )
    probes = sorted(str(p) for p in inputs.probes.iterdir())
    searched = run_ok(tree, ["search", *probes[:6], str(inputs.t1)], data)["results"]
    first, crowd = searched[0], searched[-1]
    run_ok(tree, ["review", "confirm", first["search_id"], "0", "--note", "checked"], data)
    run_ok(tree, ["review", "reject", crowd["search_id"], "1", "--note", "not them"], data)
    clusters = run_ok(tree, ["cluster", "run", str(inputs.probes), "--workers", "1"], data)["clusters"]
    run_ok(tree, ["keys", "create", "ops", "--role", "admin"], data)
    run_ok(tree, ["keys", "create", "reader", "--role", "search", "--expires-in", "90d"], data)
    run_ok(tree, ["keys", "create", "gone", "--role", "audit"], data)
    run_ok(tree, ["keys", "revoke", "gone"], data)
    run_ok(tree, ["person", "delete", "leaver"], data)
    run_ok(tree, ["enroll", str(inputs.later), "--queue-only"], data)  # jobs left queued for worker/jobs cases
    person = first["faces"][0]["candidates"][0]["person"]["external_id"]
    other = first["faces"][0]["candidates"][1]["person"]["external_id"]
    return {
        "person": person,
        "other": other,
        "search_id": first["search_id"],
        "crowd_search": crowd["search_id"],
        "face": first["faces"][0]["candidates"][0]["faces"][0]["face_id"],
        "other_face": first["faces"][0]["candidates"][1]["faces"][0]["face_id"],
        "cluster": clusters[0]["cluster_id"],
        "cluster2": clusters[1]["cluster_id"],
        "cluster3": clusters[-1]["cluster_id"],
        "cluster_face": clusters[0]["faces"][-1]["face_key"],
        "probe": probes[0],
        "probe2": probes[1],
    }


@dataclass
class Case:
    name: str  # unique, e.g. "search --largest-face"
    command: str  # the command path, e.g. "person list"
    argv: list[str]  # without --json, which every case adds
    expect_rc: int = 0


def cases(ids: dict[str, str], inputs: Inputs, scratch: Path) -> list[Case]:
    i = ids
    return [
        Case("init", "init", ["init"]),
        Case("version", "version", ["version"]),
        Case("doctor", "doctor", ["doctor"]),
        Case("doctor --deep --repair", "doctor", ["doctor", "--deep", "--repair"]),
        Case("enroll", "enroll", ["enroll", str(inputs.later), "--workers", "1"]),
        Case(
            "enroll (duplicates)",
            "enroll",
            [
                "enroll",
                *sorted(str(p) for p in (inputs.people / i["person"]).iterdir()),
                "--person",
                i["person"],
                "--workers",
                "1",
            ],
        ),
        Case("worker --drain", "worker", ["worker", "--drain", "--workers", "1"]),
        Case("search", "search", ["search", i["probe"], i["probe2"], str(inputs.t1)]),
        Case(
            "search --largest-face --filter",
            "search",
            ["search", str(inputs.t1), "--largest-face", "--filter", "dept=press", "-k", "2"],
        ),
        Case("search (missing file)", "search", ["search", str(scratch / "nope.jpg")], expect_rc=1),
        Case("audit", "audit", ["audit", i["person"]]),
        Case("audit crowd --html", "audit", ["audit", "crowd", "--html", str(scratch / "audit.html")]),
        Case("eval", "eval", ["eval", str(inputs.labelled), "--workers", "1", "--pairs", "200"]),
        Case("calibrate", "calibrate", ["calibrate", str(inputs.labelled), "--far", "0.01", "--workers", "1"]),
        Case("reindex", "reindex", ["reindex", "--model", "dlib-resnet@1", "--workers", "1"]),
        Case(
            "finetune --mode head",
            "finetune",
            ["finetune", str(inputs.labelled), "--mode", "head", "--epochs", "1", "--workers", "1"],
        ),
        Case("searches list", "searches list", ["searches", "list"]),
        Case("searches list --person", "searches list", ["searches", "list", "--person", i["person"]]),
        Case("review list", "review list", ["review", "list"]),
        Case("review confirm", "review confirm", ["review", "confirm", i["crowd_search"], "0", "--note", "ok"]),
        Case("review reject", "review reject", ["review", "reject", i["search_id"], "0", "--note", "no"]),
        Case("report reviews", "report reviews", ["report", "reviews"]),
        Case(
            "cluster run --html",
            "cluster run",
            ["cluster", "run", str(inputs.probes), "--html", str(scratch / "clusters.html"), "--workers", "1"],
        ),
        Case("cluster list", "cluster list", ["cluster", "list"]),
        Case("cluster show", "cluster show", ["cluster", "show", i["cluster"]]),
        Case("cluster name --new", "cluster name", ["cluster", "name", i["cluster"], "--new", "found", "--name", "F"]),
        Case("cluster split", "cluster split", ["cluster", "split", i["cluster"], i["cluster_face"]]),
        Case("cluster merge", "cluster merge", ["cluster", "merge", i["cluster2"], i["cluster3"]]),
        Case("cluster discard", "cluster discard", ["cluster", "discard", i["cluster3"]]),
        Case("config show", "config show", ["config", "show"]),
        Case("person add", "person add", ["person", "add", "--external-id", "new", "--attr", "dept=x"]),
        Case("person list", "person list", ["person", "list"]),
        Case("person show", "person show", ["person", "show", "crowd"]),
        Case("person show (unknown)", "person show", ["person", "show", "nobody"], expect_rc=1),
        Case("person update", "person update", ["person", "update", "crowd", "--name", "C2", "--unset", "site"]),
        Case("person merge", "person merge", ["person", "merge", i["person"], i["other"]]),
        Case("person delete", "person delete", ["person", "delete", i["person"]]),
        Case("face move", "face move", ["face", "move", i["face"], "--to", i["other"]]),
        Case("face delete", "face delete", ["face", "delete", i["other_face"]]),
        Case("jobs list", "jobs list", ["jobs", "list"]),
        Case("jobs cancel", "jobs cancel", ["jobs", "cancel", "--state", "queued"]),
        Case("faces detect", "faces detect", ["faces", "detect", str(inputs.t1), i["probe"]]),
        Case("models list", "models list", ["models", "list"]),
        Case("models show", "models show", ["models", "show"]),
        Case("models install --from", "models install", ["models", "install", "yunet", "--from", str(YUNET)]),
        Case("models remove (not installed)", "models remove", ["models", "remove", "yunet"], expect_rc=1),
        Case("keys create", "keys create", ["keys", "create", "new", "--role", "enroll", "--expires-in", "2099-01-01"]),
        Case("keys list", "keys list", ["keys", "list"]),
        Case("keys revoke", "keys revoke", ["keys", "revoke", "reader"]),
    ]


# Commands with --json that no case runs, and why.
NOT_RUN = {
    "serve": "a long-running server, no --json; its HTTP schema is compared as /openapi.json",
}


# --- comparing -------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    command: str
    status: str  # same | DIFF | error
    rc_old: int
    rc_new: int
    expect_rc: int
    diff: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    old: str
    new: str
    results: list[Result] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)
    command_set_diff: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        out = {"same": 0, "DIFF": 0, "error": 0}
        for r in self.results:
            out[r.status] += 1
        return out


def compare(
    name: str, command: str, old: tuple[int, str], new: tuple[int, str], expect_rc: int, paths: dict[str, str]
) -> tuple[Result, str, str]:
    old_text, new_text = render(Normaliser(paths).output(old[1])), render(Normaliser(paths).output(new[1]))
    diff = short_diff(old_text, new_text) if old_text != new_text else ""
    if old[0] != new[0]:
        diff = f"exit code {old[0]} -> {new[0]}\n{diff}".rstrip()
    status = "DIFF" if diff else ("same" if old[0] == expect_rc else "error")
    return Result(name, command, status, old[0], new[0], expect_rc, diff), old_text, new_text


def restore(pristine: Path, data: Path) -> None:
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(pristine, data, symlinks=True)


def run_case(
    case: Case, trees: tuple[Tree, Tree], pristine: Path, data: Path, scratch: Path
) -> Iterator[tuple[int, str]]:
    for tree in trees:
        restore(pristine, data)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            done = tree.cli([*case.argv, "--json"], data)
            yield done.returncode, done.stdout or done.stderr
        except subprocess.TimeoutExpired:
            yield 124, f"timed out after {CASE_TIMEOUT_S}s"


def run_all(
    old: Tree, new: Tree, work: Path, out: Path | None, say: Callable[[str], None], only: str | None = None
) -> Report:
    report = Report(str(old.path), str(new.path))
    data, pristine, scratch = work / "data", work / "pristine", work / "scratch"
    paths = {
        str(old.path): "<tree>",
        str(new.path): "<tree>",
        str(old.shim): "<shim>",
        str(new.shim): "<shim>",
        str(work): "<work>",
    }
    for tree in (old, new):
        say(f"{tree.label}: {verify(tree, work)[0]}")
    listed = {t.label: commands(t, work) for t in (old, new)}
    with_json = {label: {c for c, j in cmds.items() if j} for label, cmds in listed.items()}
    only_old, only_new = sorted(with_json["old"] - with_json["new"]), sorted(with_json["new"] - with_json["old"])
    if only_old or only_new:
        report.command_set_diff = {"only_old": only_old, "only_new": only_new}
    inputs = make_inputs(work / "inputs")
    started = time.monotonic()
    ids = build_store(old, data, inputs)
    shutil.copytree(data, pristine, symlinks=True)
    say(f"store built with old in {time.monotonic() - started:.0f}s")
    all_cases = cases(ids, inputs, scratch)
    chosen = [c for c in all_cases if only is None or only in c.name]
    report.not_run = not_run(with_json["old"] | with_json["new"], all_cases, chosen)
    for case in chosen:
        t0 = time.monotonic()
        old_out, new_out = run_case(case, (old, new), pristine, data, scratch)
        result, old_text, new_text = compare(case.name, case.command, old_out, new_out, case.expect_rc, paths)
        result.seconds = round(time.monotonic() - t0, 1)
        report.results.append(result)
        _keep(out, case.name, old_text, new_text)
        say(_line(result))
    if only is None or only in "/openapi.json":
        report.results.append(_openapi(old, new, work, paths, out))
        say(_line(report.results[-1]))
    return report


def not_run(with_json: set[str], all_cases: list[Case], chosen: list[Case]) -> dict[str, str]:
    """Each command with --json that no chosen case runs, and why."""
    written, ran = {c.command for c in all_cases}, {c.command for c in chosen}
    reasons = {
        command: "left out by --only" if command in written else NOT_RUN.get(command, "no case written for it")
        for command in sorted(with_json)
        if command not in ran
    }
    return {**{c: why for c, why in NOT_RUN.items() if c not in ran}, **reasons}


def _openapi(old: Tree, new: Tree, work: Path, paths: dict[str, str], out: Path | None) -> Result:
    t0, texts = time.monotonic(), []
    for tree in (old, new):
        done = tree.python_code(OPENAPI, work / "openapi-data")
        texts.append((done.returncode, done.stdout if done.returncode == 0 else done.stderr))
    result, old_text, new_text = compare("/openapi.json", "/openapi.json", texts[0], texts[1], 0, paths)
    _keep(out, "openapi", old_text, new_text)
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def _keep(out: Path | None, name: str, old_text: str, new_text: str) -> None:
    if out is None:
        return
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    (out / f"{stem}.old.json").write_text(old_text, encoding="utf-8")
    (out / f"{stem}.new.json").write_text(new_text, encoding="utf-8")


def _line(r: Result) -> str:
    codes = f"exit {r.rc_old}/{r.rc_new}" + (f" (expected {r.expect_rc})" if r.expect_rc else "")
    head = f"{r.status:<5} {r.name:<34} {codes:<22} {r.seconds:5.1f}s"
    return head + ("\n    " + r.diff.replace("\n", "\n    ") if r.diff else "")


# --- entry point -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="Git revision of the tree before (e.g. main, HEAD~3).")
    parser.add_argument(
        "--new", default=str(REPO), help="Directory of the tree after, or a revision (default: %(default)s)."
    )
    parser.add_argument("--out", type=Path, help="Write each case's normalised old/new output and summary.json here.")
    parser.add_argument(
        "--python", default=sys.executable, help="Interpreter with the dependencies (default: this one)."
    )
    parser.add_argument("--only", help="Run only the cases whose name contains this (e.g. 'cluster').")
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    say: Callable[[str], None] = (
        (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="identity-json-outputs-") as tmp:
        work = Path(tmp)
        checkouts = [checkout(args.old, work / "old-tree")]
        new_path = Path(args.new)
        if not new_path.is_dir():
            checkouts.append(checkout(args.new, work / "new-tree"))
            new_path = checkouts[-1]
        try:
            trees = []
            for label, path in (("old", checkouts[0]), ("new", new_path.resolve())):
                make_shim(path, work / f"shim-{label}")
                trees.append(Tree(label, path, work / f"shim-{label}", args.python))
            report = run_all(trees[0], trees[1], work, args.out, say, args.only)
        finally:
            for where in checkouts:
                remove_checkout(where)
    report.old, report.new = f"{args.old} ({report.old})", args.new
    report.seconds = round(time.monotonic() - started, 1)
    summary = {**asdict(report), "totals": report.totals()}
    if args.out:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for command, why in sorted(report.not_run.items()):
            print(f"not run: {command}: {why}")
        if report.command_set_diff:
            print(f"DIFF  commands with --json: {report.command_set_diff}")
        totals = report.totals()
        print(
            f"{totals['same']} same, {totals['DIFF']} DIFF, {totals['error']} error "
            f"({len(report.results)} compared) in {report.seconds:.0f}s"
        )
    failed = report.totals()["DIFF"] or report.totals()["error"] or report.command_set_diff
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
