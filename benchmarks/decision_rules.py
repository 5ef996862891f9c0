"""Which decision score separates enrolled people from strangers best? Every variant tried, on one table.

    .venv/bin/python benchmarks/decision_rules.py [--dataset DIR] [--seed 20240] [--json]

Scores every probe of eval's open-set protocol exactly (numpy, no vector store) from
eval's cached embeddings (IDENTITY_DATA_DIR; run `identity eval` first), under:
- person scores: a person's best face, or their template (normalized mean of faces);
- decision rules: d = s1 + w * z + a * (s1 - s2), where s1, s2 are the best two person
  scores and z is either the T-norm of s1 against the probe's next K persons ("t"), or
  the Z-norm of s1 against the top-1 person's K nearest other templates ("z", one more
  query per face), or their mean ("s"); w = a = 0 is today's raw rule.
For each it prints FNIR at FPIR 1e-2 and 1e-3 with 1 and 3 gallery photos per person,
and the cross-gallery check of benchmarks/fpir_transfer.py: calibrated at FPIR 1e-2 on
1,400 persons (A), the FPIR observed on the other 1,448 (B) and on a quarter of B.
The product's rule (identity.evaluation.decision) is marked; `identity eval` measures it
through the real search path.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from identity.app.templates import template_of
from identity.config import Settings
from identity.evaluation.cache import analyse_paths
from identity.evaluation.decision import COHORT, MARGIN_WEIGHT, TNORM_WEIGHT
from identity.evaluation.metrics import fnir_at_fpir
from identity.evaluation.protocol import LabelledFolder, scan_labelled
from identity.faces import build_pipeline, default_model
from identity.services.accuracy.evaluate import subject_embeddings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "lfw-dev"
SIZE_A = 1400
MISSING = -9.0
PRODUCT = ("t", TNORM_WEIGHT, MARGIN_WEIGHT)
VARIANTS = (
    [("raw", 0.0, 0.0)]
    + [("margin", 0.0, a) for a in (0.5, 1.0, 2.0)]
    + [(mode, w, a) for mode in ("t", "z", "s") for w in (0.005, 0.01, 0.02) for a in (0.0, 0.5, 1.0)]
)


@dataclass
class Protocol:
    """Exact scores of every probe against every gallery person."""

    scores: np.ndarray  # (probes with a face, persons)
    own: np.ndarray  # column of the probe's person, -1 when not in the gallery
    templates: np.ndarray  # (persons, dim), for the Z-norm cohort
    no_face: int
    person_rule: str


def protocol(
    folder: LabelledFolder, vectors: dict[str, np.ndarray | None], gallery_images: int, person_rule: str
) -> Protocol:
    gallery, probes = folder.split(gallery_images)
    faces: dict[str, list[np.ndarray]] = {}
    for person, path in gallery:
        if vectors.get(path) is not None:
            faces.setdefault(person, []).append(vectors[path])
    names = sorted(faces)
    column = {name: i for i, name in enumerate(names)}
    templates = np.stack([template_of(faces[n]) for n in names])
    found = [(person, vectors[path]) for person, path in probes if vectors.get(path) is not None]
    queries = np.stack([v for _, v in found])
    if person_rule == "template":
        scores = queries @ templates.T
    else:
        scores = np.stack([(queries @ np.stack(faces[n]).T).max(axis=1) for n in names], axis=1)
    own = np.array([column.get(person, -1) for person, _ in found])
    return Protocol(scores, own, templates, len(probes) - len(found), person_rule)


def decisions(
    p: Protocol, mode: str, w: float, a: float, k: int = COHORT
) -> tuple[list[tuple[bool, float]], list[float]]:
    """(mated, non-mated) as eval counts them: the non-mated search is the mated one with its own person removed."""
    rows = np.arange(len(p.scores))
    known = p.own >= 0
    neighbours = p.templates @ p.templates.T
    np.fill_diagonal(neighbours, -3.0)
    out = []
    for held_out in (False, True):
        scores = p.scores.copy()
        if held_out:
            scores[rows[known], p.own[known]] = -3.0
        order = np.argsort(-scores, axis=1)
        top = order[:, 0]
        ranked = np.take_along_axis(scores, order, axis=1)[:, : scores.shape[1] - held_out]
        s1, s2 = ranked[:, 0], ranked[:, 1]
        cohort = ranked[:, 1 : k + 1]
        t = (s1 - cohort.mean(1)) / cohort.std(1)
        near = neighbours[top]
        if held_out:  # the probe's person is not in that gallery: not among the neighbours either
            near[rows[known], p.own[known]] = -3.0
        near = -np.sort(-near, axis=1)[:, :k]
        z = (s1 - near.mean(1)) / near.std(1)
        norm = {"raw": 0.0, "margin": 0.0, "t": t, "z": z, "s": (t + z) / 2}[mode]
        out.append((top, s1 + w * norm + a * (s1 - s2)))
    (top, mated), (_, non_mated) = out
    correct = (top == p.own).tolist() + [False] * p.no_face
    return (list(zip(correct, mated.tolist() + [MISSING] * p.no_face)), non_mated.tolist() + [MISSING] * p.no_face)


def observed_fpir(non_mated: list[float], threshold: float) -> float:
    return float(np.mean(np.array(non_mated) >= threshold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings.load()
    settings = settings.replace(model=settings.model or default_model(settings)[0])
    folder = scan_labelled(args.dataset)
    analyses = analyse_paths(settings, build_pipeline(settings).model_id, folder.all_paths, settings.worker_count)
    vectors = subject_embeddings(analyses)
    shuffled = random.Random(args.seed).sample(folder.persons, len(folder.persons))
    a_persons, b_persons = sorted(shuffled[:SIZE_A]), sorted(shuffled[SIZE_A:])
    quarter = sorted(random.Random(args.seed + 1).sample(b_persons, len(b_persons) // 4))
    setups = {
        "g1 best face": protocol(folder, vectors, 1, "best"),
        "g3 best face": protocol(folder, vectors, 3, "best"),
        "g3 template": protocol(folder, vectors, 3, "template"),
    }
    transfer = [protocol(folder.subset(s), vectors, 1, "template") for s in (a_persons, b_persons, quarter)]
    rows = []
    for variant in VARIANTS:
        row: dict[str, object] = {"rule": "{} w={:g} a={:g}".format(*variant), "product": variant == PRODUCT}
        for name, setup in setups.items():
            mated, non_mated = decisions(setup, *variant)
            row[name] = [round(fnir_at_fpir(mated, non_mated, f)[0], 4) for f in (1e-2, 1e-3)]
        mated, non_mated = decisions(transfer[0], *variant)
        threshold = fnir_at_fpir(mated, non_mated, 1e-2)[1]
        row["fpir B / quarter B"] = [
            round(observed_fpir(decisions(t, *variant)[1], threshold), 4) for t in transfer[1:]
        ]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="FNIR at FPIR 1e-2 / 1e-3 (lower is better); FPIR observed at A's 1e-2 threshold")
    for column in ["rule", *setups, "FPIR on B / quarter of B"]:
        table.add_column(column)
    for row in rows:
        cells = [f"{row[n][0]:.3f} / {row[n][1]:.3f}" for n in setups]  # type: ignore[index]
        fp = row["fpir B / quarter B"]
        mark = " (product)" if row["product"] else ""
        table.add_row(f"{row['rule']}{mark}", *cells, f"{fp[0]:.4f} / {fp[1]:.4f}")  # type: ignore[index]
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
