"""Before/after figures of two source trees in one run: structure, lint and type counts, then speed in turns.

    .venv/bin/python benchmarks/compare_trees.py --old REV [--new REV|PATH] [--rounds 3] [--skip-perf] [--json]
        [--save figures.json] [--limit 600] [--faces 100000] [--queries 200] [--http-faces 10000] [--clients 4]
        [--searches 50]

A REV is materialised with `git worktree add --detach` into a temporary folder (removed after); --new defaults
to this working tree. Each tree runs ITS OWN benchmarks/ scripts with the same Python, under a PYTHONPATH shim
(a folder of links: identity, identity_cli = <tree>/cli, identity_migrations = <tree>/migrations) so that tree's
packages are the ones imported; the run checks and prints where they came from. IDENTITY_* variables are
dropped from the scripts' environment, so both trees run on defaults.

Structure (benchmarks/tree_structure.py): lines per layer, the largest modules, import circles and upward
imports; `duplicates` over the whole tree and over identity/; `ruff check --statistics` (the tree's [tool.ruff]
if its pyproject has one, else line length 120 and E,F,W,I,B,UP; the fixed rules are also counted for both, so
the two trees are comparable whatever their config) and `mypy identity cli` (the tree's config if any; again with
mypy's defaults where it has one, for the same reason).

Speed, in rounds: each round runs enroll.py (--limit images), search_latency.py (--faces) and http_load.py for
the old tree, then the new one (A B A B ...), each script on its own fresh temporary store, embedded backend.
Per tree the median of the rounds; the ratio new/old; "within noise" only where the spread (max - min) of one
tree's rounds is at least the difference of the medians. A script that predates --json is read from its table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tree_structure import structure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
BIN = Path(sys.executable).parent
RUFF_DEFAULT = ["--line-length", "120", "--select", "E,F,W,I,B,UP"]
# (benchmark, figure, True where higher is better)
FIGURES = [
    ("enroll", "images_per_s", True),
    ("search", "store_p95_ms", False),
    ("search", "embed_p95_ms", False),
    ("search", "script_s", False),
    ("http", "http_per_s", True),
    ("http", "http_p95_ms", False),
    ("http", "in_process_per_s", True),
]


@contextlib.contextmanager
def materialise(spec: str) -> Iterator[Path]:
    """A folder holding the tree `spec` names: that folder itself, or a detached worktree of the revision."""
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="compare-trees-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), spec], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


@contextlib.contextmanager
def shimmed(tree: Path) -> Iterator[dict[str, str]]:
    """The environment under which `tree`'s packages are the ones imported."""
    with tempfile.TemporaryDirectory(prefix="compare-shim-") as shim:
        for name, folder in (("identity", "identity"), ("identity_cli", "cli"), ("identity_migrations", "migrations")):
            (Path(shim) / name).symlink_to(tree / folder, target_is_directory=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        yield {**env, "PYTHONPATH": shim, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}


def imported_from(env: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, os, identity, identity_cli, identity_migrations as m; print(json.dumps({x.__name__: "
        "os.path.dirname(os.path.realpath(x.__file__)) for x in (identity, identity_cli, m)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def check_imports(tree: Path, env: dict[str, str]) -> dict[str, str]:
    found = imported_from(env)
    wrong = {k: v for k, v in found.items() if not Path(v).is_relative_to(tree)}
    if wrong:
        raise SystemExit(f"the shim for {tree} imports {wrong} from elsewhere")
    return found


# --- structure, lint and types ---------------------------------------------------------------------------------


def duplicate_pairs(folder: Path) -> dict[str, int]:
    out = subprocess.run(
        ["duplicates", "--repo", str(folder), "--most", "1", "--seconds", "300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    head = out.splitlines()[0]
    if "incomplete:" in out or not re.match(r"(\d+ pairs? |no duplicates)", head):
        raise RuntimeError(f"duplicates said: {out}")
    pairs = 0 if head.startswith("no duplicates") else int(head.split()[0])

    def count(pattern: str) -> int:
        found = re.search(pattern, head)
        return int(found.group(1)) if found else 0

    return {"pairs": pairs, "by_shape": count(r"(\d+) by shape alone"), "boilerplate": count(r"(\d+) of those marked")}


def has_section(tree: Path, section: str) -> bool:
    pyproject = tree / "pyproject.toml"
    tool = tomllib.loads(pyproject.read_text()).get("tool", {}) if pyproject.exists() else {}
    return section in tool


def ruff_counts(tree: Path, rules: list[str]) -> dict[str, int]:
    out = subprocess.run(
        [str(BIN / "ruff"), "check", "--statistics", "--output-format", "json", *rules, "."],
        cwd=tree,
        capture_output=True,
        text=True,
    ).stdout
    return {row["code"] or row["name"]: row["count"] for row in json.loads(out or "[]")}


def mypy_errors(tree: Path, defaults: bool) -> tuple[int, dict[str, int]]:
    """`mypy identity cli` in `tree`: the error count and the errors per code; `defaults` ignores the tree's config."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "mypy.ini"
        config.write_text("[mypy]\n")
        flags = ["--cache-dir", str(Path(scratch) / "cache")] + (["--config-file", str(config)] if defaults else [])
        run = subprocess.run([str(BIN / "mypy"), *flags, "identity", "cli"], cwd=tree, capture_output=True, text=True)
    codes: dict[str, int] = {}
    for code in re.findall(r": error: .*\[([a-z-]+)\]$", run.stdout, flags=re.M):
        codes[code] = codes.get(code, 0) + 1
    total = re.search(r"Found (\d+) errors?", run.stdout)
    if total is None and "Success" not in run.stdout:
        raise RuntimeError(f"mypy in {tree} said: {(run.stdout + run.stderr)[-2000:]}")
    return (int(total.group(1)) if total else 0), dict(sorted(codes.items(), key=lambda kv: -kv[1]))


def mypy_counts(tree: Path) -> dict[str, object]:
    """With the tree's config where it has one (as its CI runs it), and with mypy's defaults (comparable)."""
    configured = has_section(tree, "mypy") or (tree / "mypy.ini").exists() or (tree / ".mypy.ini").exists()
    errors, codes = mypy_errors(tree, defaults=not configured)
    defaults = mypy_errors(tree, defaults=True)[0] if configured else errors
    return {
        "config": "repo" if configured else "defaults",
        "errors": errors,
        "by_code": codes,
        "defaults_errors": defaults,
    }


def static_figures(tree: Path) -> dict[str, object]:
    configured = has_section(tree, "ruff")
    ruff = ruff_counts(tree, [] if configured else RUFF_DEFAULT)
    fixed = ruff if not configured else ruff_counts(tree, ["--isolated", *RUFF_DEFAULT])
    return {
        **structure(tree),
        "duplicates": {"tree": duplicate_pairs(tree), "identity": duplicate_pairs(tree / "identity")},
        "ruff": {
            "config": "repo" if configured else "default",
            "errors": sum(ruff.values()),
            "by_code": ruff,
            "fixed_rules_errors": sum(fixed.values()),
        },
        "mypy": mypy_counts(tree),
    }


# --- speed -----------------------------------------------------------------------------------------------------


def run_script(tree: Path, env: dict[str, str], script: str, args: list[str]) -> tuple[str, float]:
    """The script's stdout (JSON where it takes --json, else its printed tables) and its wall seconds."""
    path = tree / "benchmarks" / script
    json_flag = ["--json"] if "--json" in path.read_text() else []
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(path), *args, *json_flag], cwd=tree, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if out.returncode:
        raise RuntimeError(f"{path} {' '.join(args)} failed ({out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}")
    return out.stdout, seconds


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the last rich table in `text` (cells stripped; a wrapped row's continuation dropped)."""
    header: list[str] = []
    rows: list[list[str]] = []
    heading = False  # a heading rich wrapped spans several lines: their cells join per column
    for line in text.splitlines():
        if line.count("┃") >= 2:
            cells = [c.strip() for c in line.strip().strip("┃").split("┃")]
            header = [f"{h} {c}".strip() for h, c in zip(header, cells, strict=True)] if heading else cells
            heading, rows = True, []
            continue
        heading = False
        if line.count("│") >= 2 and header:
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if cells[0]:
                rows.append(cells)
    return header, rows


def number(cell: str) -> float:
    return float(cell.split()[0].rstrip("%"))


def enroll_figures(out: str) -> dict[str, float]:
    if out.lstrip().startswith("{"):
        row = json.loads(out)["backends"]["sqlite"]["default"]
        return {"images_per_s": row["images_per_s"], "wall_s": row["seconds"]}
    header, rows = table_rows(out)
    [row] = [r for r in rows if r[0] == "sqlite"]
    return {"images_per_s": number(row[header.index("images/s")]), "wall_s": number(row[header.index("wall s")])}


def search_figures(out: str, seconds: float) -> dict[str, float]:
    if out.lstrip().startswith("{"):
        r = json.loads(out)["sqlite"]
        return {
            "store_p95_ms": r["store_p95"],
            "embed_p95_ms": r["embed_p95"],
            "fill_s": r["fill_s"],
            "script_s": seconds,
        }
    header, rows = table_rows(out)
    [row] = [r for r in rows if r[0] == "sqlite"]
    store = header.index("vector+SQL p50") + 1
    return {
        "store_p95_ms": number(row[store]),
        "embed_p95_ms": number(row[header.index("detect+embed p50") + 1]),
        "script_s": seconds,
    }


def http_figures(out: str) -> dict[str, float]:
    r = json.loads(out)
    return {
        "http_per_s": r["http"]["per_second"],
        "http_p95_ms": r["http"]["p95_ms"],
        "in_process_per_s": r["in_process"]["per_second"],
    }


def one_round(tree: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One tree's three benchmarks, each on its own fresh store; `seconds` is each script's wall time."""
    dataset = ["--dataset", str(args.dataset)]
    enroll_args = ["--limit", str(args.limit), "--backends", "sqlite", "--baseline", "0", "--sample", "1"]
    search_args = ["--faces", str(args.faces), "--queries", str(args.queries), "--backends", "sqlite"]
    http_args = ["--faces", str(args.http_faces), "--clients", str(args.clients), "--searches", str(args.searches)]
    enroll, enroll_s = run_script(tree, env, "enroll.py", [*dataset, *enroll_args])
    search, search_s = run_script(tree, env, "search_latency.py", [*dataset, *search_args])
    http, http_s = run_script(tree, env, "http_load.py", [*dataset, *http_args])
    return {
        "enroll": enroll_figures(enroll),
        "search": search_figures(search, search_s),
        "http": http_figures(http),
        "seconds": {"enroll": enroll_s, "search": search_s, "http": http_s},
    }


def verdict(old: list[float], new: list[float], higher_is_better: bool) -> dict[str, object]:
    med_old, med_new = statistics.median(old), statistics.median(new)
    spread = max(max(old) - min(old), max(new) - min(new))
    ratio = med_new / med_old if med_old else float("nan")
    better = (med_new > med_old) == higher_is_better
    call = "within noise" if abs(med_new - med_old) <= spread else ("new better" if better else "new worse")
    return {"old": old, "new": new, "median_old": med_old, "median_new": med_new, "ratio": ratio, "verdict": call}


# --- report ----------------------------------------------------------------------------------------------------


def short(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def print_report(result: dict) -> None:
    old, new = result["trees"]["old"], result["trees"]["new"]
    so, sn = old["structure"], new["structure"]
    print(f"old: {old['spec']}  ({old['imports']['identity']})\nnew: {new['spec']}  ({new['imports']['identity']})")
    print(f"\n{'figure':<34}{'old':>12}{'new':>12}")
    rows = [("modules", so["modules"], sn["modules"]), ("lines (identity + cli)", so["lines"], sn["lines"])]
    rows += [
        (f"  lines: {layer}", so["lines_per_layer"][layer], sn["lines_per_layer"][layer])
        for layer in so["lines_per_layer"]
    ]
    rows += [
        (name, so[key], sn[key])
        for name, key in (
            ("import edges", "import_edges"),
            ("import circles (SCC > 1)", "import_circles"),
            ("modules in circles", "modules_in_circles"),
            ("upward imports", "upward_imports"),
        )
    ]
    rows += [("mutual imports (pairs)", len(so["mutual_imports"]), len(sn["mutual_imports"]))]
    for where in ("tree", "identity"):
        d_old, d_new = so["duplicates"][where], sn["duplicates"][where]
        rows += [
            (f"duplicated regions: {where}", d_old["pairs"], d_new["pairs"]),
            ("  of which by shape only", d_old["by_shape"], d_new["by_shape"]),
        ]
    rows += [
        (f"ruff ({so['ruff']['config']} / {sn['ruff']['config']} config)", so["ruff"]["errors"], sn["ruff"]["errors"]),
        ("ruff, fixed rules E,F,W,I,B,UP 120", so["ruff"]["fixed_rules_errors"], sn["ruff"]["fixed_rules_errors"]),
        (f"mypy ({so['mypy']['config']} / {sn['mypy']['config']} config)", so["mypy"]["errors"], sn["mypy"]["errors"]),
        ("mypy, defaults", so["mypy"]["defaults_errors"], sn["mypy"]["defaults_errors"]),
    ]
    for name, a, b in rows:
        print(f"{name:<34}{a:>12}{b:>12}")
    for label, s in (("old", so), ("new", sn)):
        print(f"\nlargest modules ({label}): " + ", ".join(f"{m['module']} {m['lines']}" for m in s["largest_modules"]))
        for circle in s["circles"]:
            print(f"circle ({label}): {' '.join(circle)}")
        if s["upward"]:
            layers = ", ".join(f"{pair} {n}" for pair, n in s["upward_by_layers"].items())
            print(f"upward imports ({label}): {layers}: {', '.join(s['upward'])}")
    if "speed" not in result:
        return
    speed = result["speed"]
    print(f"\nspeed, {speed['rounds']} rounds in turns (old, new), median per tree; {speed['settings']}")
    print(f"{'figure':<28}{'old':>10}{'new':>10}{'new/old':>9}  verdict (rounds old | new)")
    for key, v in speed["figures"].items():
        rounds = " ".join(map(short, v["old"])) + " | " + " ".join(map(short, v["new"]))
        print(
            f"{key:<28}{v['median_old']:>10.2f}{v['median_new']:>10.2f}{v['ratio']:>8.2f}x  {v['verdict']} ({rounds})"
        )
    for label in ("old", "new"):
        fills = [r["search"]["fill_s"] for r in speed["per_round"][label] if "fill_s" in r["search"]]
        if fills:  # only a search_latency.py that takes --json reports it; search.script_s includes it
            print(f"search store build ({label}), median: {statistics.median(fills):.0f} s")
        walls = [r["seconds"] for r in speed["per_round"][label] if "seconds" in r]
        if walls:
            print(
                f"script wall s per round ({label}): "
                + "; ".join(", ".join(f"{k} {v:.0f}" for k, v in w.items()) for w in walls)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="revision (or folder) of the tree before")
    parser.add_argument("--new", default=str(REPO), help="revision or folder of the tree after (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-perf", action="store_true", help="structure, lint and type figures only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the report")
    parser.add_argument("--save", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--limit", type=int, default=600, help="images enroll.py enrolls per round")
    parser.add_argument("--faces", type=int, default=100_000, help="faces in search_latency.py's store")
    parser.add_argument("--queries", type=int, default=200, help="search_latency.py's queries")
    parser.add_argument("--http-faces", type=int, default=10_000, help="faces in http_load.py's store")
    parser.add_argument("--clients", type=int, default=4, help="http_load.py's client threads")
    parser.add_argument("--searches", type=int, default=50, help="http_load.py's searches per client")
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict = {"trees": {}}
    with contextlib.ExitStack() as stack:
        trees, envs = {}, {}
        for label, spec in (("old", args.old), ("new", args.new)):
            trees[label] = stack.enter_context(materialise(spec))
            envs[label] = stack.enter_context(shimmed(trees[label]))
            imports = check_imports(trees[label], envs[label])
            print(f"{label}: {spec} imports {imports}", file=sys.stderr)
            result["trees"][label] = {"spec": spec, "imports": imports, "structure": static_figures(trees[label])}
        if not args.skip_perf:
            rounds: dict[str, list[dict]] = {"old": [], "new": []}
            for n in range(args.rounds):
                for label in ("old", "new"):
                    print(
                        f"round {n + 1}/{args.rounds}: {label} ({time.perf_counter() - started:.0f} s)", file=sys.stderr
                    )
                    rounds[label].append(one_round(trees[label], envs[label], args))
            result["speed"] = {
                "rounds": args.rounds,
                "per_round": rounds,
                "settings": f"enroll --limit {args.limit}, search --faces {args.faces} --queries {args.queries}, "
                f"http --faces {args.http_faces} --clients {args.clients} --searches {args.searches}",
                "figures": {
                    f"{bench}.{key}": verdict(
                        [r[bench][key] for r in rounds["old"]], [r[bench][key] for r in rounds["new"]], higher
                    )
                    for bench, key, higher in FIGURES
                },
            }
    result["seconds"] = time.perf_counter() - started
    if args.save:
        args.save.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
        print(f"\n({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
