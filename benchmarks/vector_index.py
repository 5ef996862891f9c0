"""Qdrant Edge (HNSW) against exact numpy search on synthetic, face-like clusters.

    .venv/bin/python benchmarks/vector_index.py [--n 100000 --clusters 20000 --dim 512 --queries 1000]
    .venv/bin/python benchmarks/vector_index.py --quick

Each cluster stands for one person: a random unit centre plus Gaussian noise, with a
per-person spread chosen so that two photos of the same person have cosine ~0.6-0.8
and photos of different people ~0 (as with CosFace/ArcFace embeddings). Queries are
fresh noisy members of random clusters, i.e. new photos of enrolled people.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from identity.config import Settings, VectorSettings
from identity.store.vectors import EdgeIndex, ExactIndex, VectorHit, VectorIndex, VectorPoint

K = 10
BATCH = 1000
# Proposed VectorSettings defaults: on this data they reach recall@10 >= 0.95 (see the module doc).
HNSW_M, HNSW_EF_CONSTRUCT, SEARCH_EF = 32, 128, 512
SAME_COSINE = (0.6, 0.8)  # range of expected cosine between two photos of one person


@dataclass
class Data:
    points: list[VectorPoint]
    queries: np.ndarray
    query_persons: list[uuid.UUID]


@dataclass
class Run:
    name: str
    upserts_per_s: float
    build_s: float
    latencies_ms: np.ndarray
    results: list[list[VectorHit]]


def make_data(n: int, clusters: int, dim: int, queries: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((clusters, dim), dtype=np.float32))
    # A member is centre + r * noise/sqrt(dim): cosine between two members ~ 1 / (1 + r^2).
    target = rng.uniform(*SAME_COSINE, size=clusters)
    spread = np.sqrt(1 / target - 1).astype(np.float32)
    persons = [uuid.uuid4() for _ in range(clusters)]
    owner = np.arange(n) % clusters  # n / clusters photos per person

    def members(of: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(of), dim), dtype=np.float32) / np.sqrt(dim)
        return _unit(centres[of] + spread[of, None] * noise)

    vectors = np.concatenate([members(owner[i : i + 10_000]) for i in range(0, n, 10_000)])
    points = [VectorPoint(uuid.uuid4(), persons[c], vectors[i]) for i, c in enumerate(owner)]
    asked = rng.integers(0, clusters, size=queries)
    return Data(points, members(asked), [persons[c] for c in asked])


def run(name: str, index: VectorIndex, data: Data, progress: Progress) -> Run:
    task = progress.add_task(f"{name}: upsert", total=len(data.points))
    start = time.perf_counter()
    for i in range(0, len(data.points), BATCH):
        index.upsert(data.points[i : i + BATCH])
        progress.advance(task, BATCH)
    upsert_s = time.perf_counter() - start

    task = progress.add_task(f"{name}: build index (optimize)", total=None)
    start = time.perf_counter()
    index.optimize()
    build_s = time.perf_counter() - start
    progress.update(task, total=1, completed=1)

    task = progress.add_task(f"{name}: queries", total=len(data.queries))
    latencies, results = [], []
    for query in data.queries:
        start = time.perf_counter()
        results.append(index.search(query, K))
        latencies.append((time.perf_counter() - start) * 1000)
        progress.advance(task)
    return Run(name, len(data.points) / upsert_s, build_s, np.array(latencies), results)


def recall(run: Run, truth: Run) -> float:
    found = [
        len({h.face_id for h in got} & {h.face_id for h in want}) / len(want)
        for got, want in zip(run.results, truth.results, strict=True)
    ]
    return float(np.mean(found))


def mates_found(run: Run, data: Data) -> float:
    """Share of the query person's own gallery photos among the top K (what a search is for)."""
    photos = Counter(p.person_id for p in data.points)
    found = [
        sum(h.person_id == person for h in hits) / min(K, photos[person])
        for hits, person in zip(run.results, data.query_persons, strict=True)
    ]
    return float(np.mean(found))


def top1_accuracy(run: Run, data: Data) -> float:
    right = [
        bool(hits) and hits[0].person_id == person for hits, person in zip(run.results, data.query_persons, strict=True)
    ]
    return float(np.mean(right))


def cosine_profile(data: Data, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean same-person cosine, mean and 99.9th percentile of different-person cosine (sampled)."""
    by_person: dict[uuid.UUID, list[np.ndarray]] = {}
    for point in data.points:
        by_person.setdefault(point.person_id, []).append(point.vector)
    groups = list(by_person.values())[:2000]
    same = [float(a @ b) for faces in groups for a, b in itertools.combinations(faces, 2)]
    pairs = [(data.points[i], data.points[j]) for i, j in rng.integers(0, len(data.points), (20_000, 2))]
    other = np.array([a.vector @ b.vector for a, b in pairs if a.person_id != b.person_id])
    return float(np.mean(same)), float(np.mean(other)), float(np.quantile(other, 0.999))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the gallery")
    parser.add_argument("--clusters", type=int, default=20_000, help="persons (n / clusters photos each)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=HNSW_M, help="HNSW edges per node")
    parser.add_argument("--ef-construct", type=int, default=HNSW_EF_CONSTRUCT)
    parser.add_argument("--ef", type=int, default=SEARCH_EF, help="HNSW ef at search time")
    parser.add_argument("--quick", action="store_true", help="a small run: 10,000 vectors, 200 queries")
    args = parser.parse_args()
    if args.quick:
        args.n, args.clusters, args.queries = 10_000, 2_000, 200

    console = Console()
    vectors = VectorSettings(hnsw_m=args.m, hnsw_ef_construct=args.ef_construct, search_ef=args.ef)
    console.print(
        f"{args.n:,} vectors of {args.dim} dims in {args.clusters:,} clusters, {args.queries:,} queries; "
        f"HNSW m={vectors.hnsw_m} ef_construct={vectors.hnsw_ef_construct} ef={vectors.search_ef}"
    )
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
    ]
    with (
        tempfile.TemporaryDirectory(prefix="identity-bench-") as tmp,
        Progress(*columns, console=console) as bar,
    ):
        task = bar.add_task("generate data", total=None)
        data = make_data(args.n, args.clusters, args.dim, args.queries)
        bar.update(task, total=1, completed=1)
        settings = Settings(data_dir=Path(tmp), vectors=vectors)
        with EdgeIndex.open(settings, "bench", args.dim) as edge:
            edge_run = run("edge", edge, data, bar)
        exact_run = run("exact", ExactIndex(args.dim), data, bar)

    same, other, other_tail = cosine_profile(data, np.random.default_rng(1))
    console.print(
        f"cosine: same person mean {same:.3f}; different persons mean {other:.3f}, 99.9th pct {other_tail:.3f}"
    )
    headers = ("engine", "upserts/s", "build s", "p50 ms", "p95 ms", f"recall@{K}", f"mates@{K}", "top-1 acc")
    table = Table(*headers, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for r in (edge_run, exact_run):
        table.add_row(
            r.name,
            f"{r.upserts_per_s:,.0f}",
            f"{r.build_s:.1f}",
            f"{np.percentile(r.latencies_ms, 50):.2f}",
            f"{np.percentile(r.latencies_ms, 95):.2f}",
            f"{recall(r, exact_run):.4f}",
            f"{mates_found(r, data):.4f}",
            f"{top1_accuracy(r, data):.4f}",
        )
    console.print(table)
    ratio = np.percentile(edge_run.latencies_ms, 50) / np.percentile(exact_run.latencies_ms, 50)
    console.print(f"edge p50 / exact p50 = {ratio:.3f}")


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


if __name__ == "__main__":
    main()
