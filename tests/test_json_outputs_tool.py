"""benchmarks/json_outputs.py: its normaliser and comparison (fast, no store) and its --help."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "benchmarks" / "json_outputs.py"

_spec = importlib.util.spec_from_file_location("json_outputs", TOOL)
assert _spec is not None and _spec.loader is not None
tool = importlib.util.module_from_spec(_spec)
sys.modules["json_outputs"] = tool  # dataclasses look their module up by name
_spec.loader.exec_module(tool)

A = "2c61572f-c24b-4511-89bb-00f9a1c81605"
B = "9833946b-1709-4c42-a3c8-54043838a439"


def normalise(doc: object, paths: dict[str, str] | None = None) -> object:
    return tool.Normaliser(paths).output(json.dumps(doc))


def test_uuids_are_numbered_by_first_appearance_so_identity_and_order_still_count() -> None:
    doc = {"search_id": B, "hits": [{"person": A}, {"person": B}], "note": f"face {A} moved"}
    assert normalise(doc) == {
        "search_id": "<uuid:1>",
        "hits": [{"person": "<uuid:2>"}, {"person": "<uuid:1>"}],
        "note": "face <uuid:2> moved",
    }
    # The same ids in another pattern normalise differently: a swapped person is still a DIFF.
    assert normalise({"search_id": B, "hits": [{"person": B}, {"person": A}]}) != normalise(
        {"search_id": B, "hits": [{"person": A}, {"person": B}]}
    )


def test_timestamps_durations_tokens_and_keys_are_masked_and_settings_kept() -> None:
    doc = {
        "created_at": "2026-12-06T15:50:16.264860+00:00",
        "when": "2026-12-06 15:50:16Z",
        "seconds": 2.42,
        "images_per_second": 8.68,
        "train_seconds": 3.4,
        "wall_seconds": 8,
        "lease_seconds": 600,
        "request_deadline_seconds": 30.0,
        "batch": "c64d29300a32",
        "key": "idk_85e95af585c7_dvnvAmOZgTCqFHcq1kSd8uCD0mz9uQofcc5_M86xOqA",
        "key_id": "85e95af585c7",
        "clusters": [{"cluster_id": "c5f5ac39fee1"}, {"cluster_id": "0aa1b2c3d4e5"}],
        "score": 0.9737,
        "faces": 3,
        "passed": True,
    }
    assert normalise(doc) == {
        "created_at": "<time>",
        "when": "<time>",
        "seconds": "<duration>",
        "images_per_second": "<duration>",
        "train_seconds": "<duration>",
        "wall_seconds": "<duration>",
        "lease_seconds": 600,
        "request_deadline_seconds": 30.0,
        "batch": "<batch:1>",
        "key": "<api-key:1>",
        "key_id": "<key_id:1>",
        "clusters": [{"cluster_id": "<cluster_id:1>"}, {"cluster_id": "<cluster_id:2>"}],
        "score": 0.9737,
        "faces": 3,
        "passed": True,
    }


def test_tree_and_temp_paths_are_named_longest_first() -> None:
    paths = {"/tmp/x": "<work>", "/tmp/x/old-tree": "<tree>", "/repo": "<tree>"}
    doc = {"a": "/tmp/x/old-tree/identity/app.py", "b": "/repo/identity/app.py", "c": "/tmp/x/data/identity.db"}
    assert normalise(doc, paths) == {
        "a": "<tree>/identity/app.py",
        "b": "<tree>/identity/app.py",
        "c": "<work>/data/identity.db",
    }


def test_json_lines_and_plain_text_are_normalised_too() -> None:
    lines = json.dumps({"id": A}) + "\n" + json.dumps({"id": B}) + "\n"
    assert tool.Normaliser().output(lines) == [{"id": "<uuid:1>"}, {"id": "<uuid:2>"}]
    assert tool.Normaliser().output(f"moved {A} at 2026-01-02T03:04:05Z\n") == "moved <uuid:1> at <time>\n"
    assert tool.Normaliser().output("") == ""


def test_compare_says_same_diff_or_error_and_compares_exit_codes() -> None:
    doc = json.dumps({"id": A, "seconds": 1.0})
    later = json.dumps({"id": B, "seconds": 9.0})
    assert tool.compare("x", "x", (0, doc), (0, later), 0, {})[0].status == "same"
    changed = tool.compare("x", "x", (0, doc), (0, json.dumps({"id": A, "seconds": 1.0, "new": 1})), 0, {})[0]
    assert changed.status == "DIFF" and '+  "new": 1' in changed.diff
    codes = tool.compare("x", "x", (0, doc), (4, doc), 0, {})[0]
    assert codes.status == "DIFF" and codes.diff.startswith("exit code 0 -> 4")
    assert tool.compare("x", "x", (1, doc), (1, doc), 0, {})[0].status == "error"  # both fail, unexpectedly
    assert tool.compare("x", "x", (1, doc), (1, doc), 1, {})[0].status == "same"  # an error case, as expected


def test_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--old" in done.stdout and "--new" in done.stdout and "--json" in done.stdout


def test_every_json_command_without_a_case_is_listed_with_why() -> None:
    search, audit = tool.Case("search", "search", ["search"]), tool.Case("audit", "audit", ["audit"])
    missing = tool.not_run({"search", "audit", "person list"}, [search, audit], [search])
    assert missing == {
        "serve": tool.NOT_RUN["serve"],
        "audit": "left out by --only",
        "person list": "no case written for it",
    }
    assert tool.not_run({"search"}, [search], [search]) == {"serve": tool.NOT_RUN["serve"]}
