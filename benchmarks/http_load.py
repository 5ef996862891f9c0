"""Search over HTTP against the same searches in-process, on one store, in one run.

    .venv/bin/python benchmarks/http_load.py [--faces 10000] [--clients 4] [--searches 200] [--json]

A temporary store is filled with N synthetic faces (as benchmarks/search_latency.py does).
Then, in this process, `--clients` threads each run `--searches` searches of real lfw-dev
photos through the server's own core (its inference pool, then the search service), with
no server running. The App is closed, `identity serve` starts on the same store, and the
same number of client threads post the same photos to POST /v1/search. Prints searches/s
and p50/p95 latency of both, and their ratios (targets: HTTP throughput >= 0.85x
in-process, p95 <= 1.3x).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_latency import LFW, fill  # noqa: E402

from identity.api.context import ApiContext  # noqa: E402
from identity.app.core import (
    App,  # noqa: E402
    open_deployment,  # noqa: E402
)
from identity.config import Settings  # noqa: E402
from identity.services.access.keys import create_key  # noqa: E402
from identity.services.search.identify import SearchOptions  # noqa: E402


def run_clients(clients: int, searches: int, photos: list[Path], one: Callable[[Path], None]) -> dict[str, float]:
    """`clients` threads, each doing `searches` calls of `one`; throughput and latency percentiles."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        mine = []
        for n in range(searches):
            photo = photos[(index * searches + n) % len(photos)]
            t0 = time.perf_counter()
            one(photo)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "searches": len(latencies),
        "per_second": len(latencies) / wall,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
    }


def in_process(settings: Settings, clients: int, searches: int, photos: list[Path]) -> dict[str, float]:
    with App.open(settings) as core:
        ctx = ApiContext(core)
        options = SearchOptions(top_k=5, actor="benchmark")

        def one(photo: Path) -> None:
            [analysed] = ctx.analyse([photo], wait=True)
            ctx.search(photo, analysed, str(photo), options)  # the route's path: the search service, counted

        ctx.inference.warm()  # every inference thread's models loaded, as `identity serve` does at start
        try:
            return run_clients(clients, searches, photos, one)
        finally:
            ctx.close()


def over_http(settings: Settings, key: str, clients: int, searches: int, photos: list[Path]) -> dict[str, float]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IDENTITY_DATA_DIR": str(settings.data_dir)}
    server = subprocess.Popen(
        [sys.executable, "-m", "identity_cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        headers = {"Authorization": f"Bearer {key}"}
        local = threading.local()

        def one(photo: Path) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, headers=headers, timeout=60)
            answer = local.client.post(
                "/v1/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, data={"top_k": "5"}
            )
            answer.raise_for_status()

        one(photos[0])  # warm
        return run_clients(clients, searches, photos, one)
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--searches", type=int, default=200, help="per client")
    parser.add_argument("--dataset", type=Path, default=LFW)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    photos = sorted(args.dataset.glob("*/*.jpg"))[::7][:400]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        with open_deployment(settings) as dep:
            fill(dep, args.faces, 7, console)
            key = create_key(dep.app, "benchmark", "search").key
        local = in_process(settings, args.clients, args.searches, photos)
        http = over_http(settings, key, args.clients, args.searches, photos)
    ratios = {"throughput": http["per_second"] / local["per_second"], "p95": http["p95_ms"] / local["p95_ms"]}
    if args.json:
        print(json.dumps({"in_process": local, "http": http, "ratios": ratios}, indent=2))
        return
    table = Table(title=f"{args.clients} clients x {args.searches} searches, {args.faces} faces in the store")
    for column in ("path", "searches/s", "p50 ms", "p95 ms"):
        table.add_column(column)
    for name, r in (("in-process (threads)", local), ("HTTP (identity serve)", http)):
        table.add_row(name, f"{r['per_second']:.2f}", f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}")
    Console().print(table)
    Console().print(
        f"HTTP / in-process: throughput {ratios['throughput']:.2f}x (target >= 0.85), "
        f"p95 {ratios['p95']:.2f}x (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
