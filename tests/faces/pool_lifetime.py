"""What a worker pool leaves behind when its parent ends: a harness for tests and benchmarks/faults.py.

`python pool_lifetime.py kill|normal` runs as a child subreaper (Linux prctl), so every process
orphaned below it is re-parented to it instead of to init, where it could not be seen. It starts
`python pool_lifetime.py parent MODE DIR`: a parent running `run_in_workers` with 2 workers.
- kill: once both workers are busy, SIGKILL the parent, then wait up to LINGER seconds for
  what it left to end;
- normal: let the parent finish;
- interrupt: the parent raises KeyboardInterrupt (as at Ctrl-C) on its first result while the
  other worker is busy; it must end within LINGER seconds, not wait for that task.
It prints one JSON line, {"left": [...]}: the processes (pid, state, command) still alive or
unreaped below it at the end; each is then killed and reaped, so a failed run leaves nothing.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
LINGER = 5.0  # seconds the pool's processes get to notice their parent died
BUSY_SECONDS = 120.0  # a task outlasting any test: a worker still alive after LINGER was not stopped


def busy(pipeline: object, chunk: list[int]) -> list[int]:
    """The workers' task: announce itself on stdout, then work for longer than any test waits."""
    print(f"busy {os.getpid()}", flush=True)
    time.sleep(BUSY_SECONDS if chunk[0] >= 0 else 0)
    return chunk


def run_parent(mode: str, data_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from identity.config import Settings
    from identity.faces.workers import run_in_workers

    items = {"kill": [0, 1], "normal": [-1, -2, -3], "interrupt": [-1, 0, 1]}[mode]
    for _ in run_in_workers(Settings(data_dir=Path(data_dir)), busy, items, workers=2, chunk_size=1):
        if mode == "interrupt":
            raise KeyboardInterrupt


def children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of each process whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cmdline = cmdline or stat[stat.index("(") + 1 : stat.rindex(")")]  # a zombie keeps only its name
        except OSError:
            continue  # ended while we looked
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid:
            found.append((int(entry.name), state, cmdline))
    return found


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def supervise(mode: str) -> dict[str, object]:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return {"error": "prctl(PR_SET_CHILD_SUBREAPER) failed"}
    with tempfile.TemporaryDirectory() as data_dir:
        parent = subprocess.Popen(
            [sys.executable, __file__, "parent", mode, data_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert parent.stdout is not None
        if mode == "kill":
            busy_workers = {parent.stdout.readline() for _ in range(2)}  # both workers are in their task
            os.kill(parent.pid, signal.SIGKILL)
        try:
            parent.wait(timeout=LINGER)
        except subprocess.TimeoutExpired:  # it waits for its busy workers: the failure under test
            parent.kill()
            parent.wait()
        # Orphans are re-parented before the parent can be waited for: what is below us now was left.
        left = children(os.getpid())
        deadline = time.monotonic() + (LINGER if mode == "kill" else 0.0)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            reap()
            left = children(os.getpid())
        for pid, _, _ in left:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap()
    result: dict[str, object] = {
        "left": [f"{pid} {state} {cmd}" for pid, state, cmd in left],
        "parent_rc": parent.returncode,
    }
    if mode == "kill":
        result["busy"] = sorted(line.strip() for line in busy_workers)
    return result


if __name__ == "__main__":
    if sys.argv[1] == "parent":
        run_parent(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(supervise(sys.argv[1])))
