"""`identity eval DIR` and `identity calibrate DIR`: measure a deployment on labelled photos.

Images are analysed once per (model, bytes) and cached. Identification goes through the
product's own enrollment writer and search service, in a temporary store unless
use_store is set. Protocols: identity.evaluation.protocol.

Open-set figures use every probe twice: as a mated search (its person is in the
gallery) and as a non-mated one, scored by the best candidate that is not its person —
exactly what the search would return with that person held out of the gallery.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from identity.config import Settings
from identity.errors import IdentityError
from identity.evaluation import metrics
from identity.evaluation.cache import Outcome, analyse_paths
from identity.evaluation.protocol import LabelledFolder, genuine_pairs, impostor_pairs, scan_labelled, subject_face
from identity.faces import DEFAULT_MODEL, ImageFaces, build_pipeline
from identity.services.active_model import resolve_model, with_model
from identity.services.deployment import open_deployment
from identity.services.enroll import EnrollmentWriter, enroll_analysed
from identity.services.init import prepare_model
from identity.services.runtime import Runtime
from identity.services.search import SearchOptions, search_faces
from identity.store.sql.db import transaction
from identity.store.sql.jobs import JobSpec
from identity.store.sql.queries import find_model

FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (1e-2, 1e-3)
MISSING = -1.0  # the score of a pair or search without a face: below any threshold


@dataclass(frozen=True)
class EvalOptions:
    workers: int = 0
    pair_cap: int = 20_000  # genuine pairs at most (and as many impostor pairs)
    seed: int = 20240
    top_k: int = 10
    use_store: bool = False  # identification in the user's store instead of a temporary one
    identification: bool = True


Progress = Callable[[str, int | None], Callable[[int], None]]  # (stage, total) -> advance(n)


def _no_progress(stage: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def evaluate_folder(settings: Settings, root: Path, options: EvalOptions = EvalOptions(),
                    progress: Progress = _no_progress) -> dict[str, Any]:
    started = time.perf_counter()
    # Evaluation measures the configured pack (else the default), never silently the store's pointer.
    settings = settings.replace(model=settings.model or DEFAULT_MODEL)
    folder = scan_labelled(root)
    model_id = build_pipeline(settings).model_id
    analyses = analyse_paths(settings, model_id, folder.all_paths, options.workers or settings.worker_count,
                             progress("analysing images", len(folder.all_paths)))
    embeddings = subject_embeddings(analyses)
    report: dict[str, Any] = {
        "model": model_id, "dataset": str(folder.root), "persons": len(folder.persons),
        "images": len(folder.all_paths),
        "no_face_images": sum(1 for p in folder.all_paths if embeddings.get(p) is None),
        "unreadable_images": sum(1 for o in analyses.values() if not isinstance(o, ImageFaces)),
    }
    report.update(verification(folder, embeddings, options))
    report["threshold_at_far"] = {f"{far:g}": _threshold_entry(t) for far, t in impostor_thresholds(folder, embeddings).items()}
    if options.identification:
        report.update(identification(settings, folder, analyses, options, progress))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report


def subject_embeddings(analyses: dict[str, Outcome]) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {}
    for path, outcome in analyses.items():
        face = subject_face(outcome) if isinstance(outcome, ImageFaces) else None
        out[path] = None if face is None else face.embedding
    return out


def verification(folder: LabelledFolder, embeddings: dict[str, np.ndarray | None], options: EvalOptions) -> dict[str, Any]:
    genuine = genuine_pairs(folder, options.pair_cap, options.seed)
    if not genuine:
        return {"verification": None, "note": "no person has two images: no genuine pairs"}
    impostor = impostor_pairs(folder, len(genuine), options.seed)
    scores = np.array([_pair_score(embeddings, a, b) for a, b in genuine + impostor])
    labels = np.array([True] * len(genuine) + [False] * len(impostor))
    accuracy, std, best = metrics.ten_fold_accuracy(scores, labels, options.seed)
    equal_error, eer_threshold = metrics.eer(scores, labels)
    tar = {}
    for far in FARS:
        value, threshold = metrics.tar_at_far(scores, labels, far)
        tar[f"{far:g}"] = round(value, 4) if far * len(impostor) >= 1 else None
    far_curve, tar_curve, _ = metrics.roc(scores, labels)
    return {
        "genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
        "pairs_with_missing_face": int(np.sum(scores == MISSING)),
        "best_accuracy": round(accuracy, 4), "best_accuracy_std": round(std, 4), "best_accuracy_threshold": round(best, 4),
        "tar_at_far": tar, "eer": round(equal_error, 4), "eer_threshold": round(eer_threshold, 4),
        "_roc": {"far": far_curve.tolist(), "tar": tar_curve.tolist()},
        "_scores": {"genuine": scores[labels].tolist(), "impostor": scores[~labels].tolist()},
    }


def impostor_thresholds(folder: LabelledFolder, embeddings: dict[str, np.ndarray | None],
                        fars: tuple[float, ...] = FARS) -> dict[float, metrics.FarThreshold]:
    """Thresholds at each FAR over every cross-person pair of subject faces (all of them, for precision)."""
    paths = [p for p in folder.all_paths if embeddings.get(p) is not None]
    owner = {p: person for person in folder.persons for p in folder.images[person]}
    if len({owner[p] for p in paths}) < 2:
        raise IdentityError(f"{folder.root}: faces were found for fewer than two persons; cannot measure impostors")
    matrix = np.stack([embeddings[p] for p in paths]).astype(np.float32)
    labels = np.array([owner[p] for p in paths])
    chunks = []
    for start in range(0, len(paths), 512):
        block = matrix[start:start + 512] @ matrix.T
        rows = np.arange(start, min(start + 512, len(paths)))[:, None]
        upper = np.arange(len(paths))[None, :] > rows  # each unordered pair once
        different = labels[start:start + 512, None] != labels[None, :]
        chunks.append(block[upper & different])
    scores = np.concatenate(chunks)
    return {far: metrics.threshold_at_far(scores, far) for far in fars}


def identification(settings: Settings, folder: LabelledFolder, analyses: dict[str, Outcome],
                   options: EvalOptions, progress: Progress) -> dict[str, Any]:
    gallery = folder.gallery()
    probes = folder.probes()
    with tempfile.TemporaryDirectory(prefix="identity-eval-") as tmp:
        target = settings if options.use_store else settings.replace(
            data_dir=Path(tmp), database_url=None, qdrant_url=None, qdrant_api_key=None)
        with open_deployment(target) as dep:
            writer = EnrollmentWriter(dep.runtime, dep.index, dep.model.id)
            items = [(JobSpec(path, person), _subject_only(analyses[path])) for person, path in gallery]
            advance = progress("enrolling gallery", None)
            enrolled = enroll_analysed(dep.runtime, writer, items)
            advance(len(items))
            failed_gallery = len(items) - enrolled.counts.get("enrolled", 0)
            ranks: list[int | None] = []
            mated: list[tuple[bool, float]] = []
            non_mated: list[float] = []
            no_face = 0
            search = SearchOptions(top_k=options.top_k, actor="identity eval")
            advance = progress("searching probes", len(probes))
            for person, path in probes:
                found = _subject_only(analyses[path])
                if not isinstance(found, ImageFaces) or not found.faces:
                    no_face += 1
                    ranks.append(None)
                    mated.append((False, MISSING))
                    non_mated.append(MISSING)
                    advance(1)
                    continue
                [face] = search_faces(dep, found, search).faces
                names = [c.person["external_id"] for c in face.candidates]
                ranks.append(names.index(person) + 1 if person in names else None)
                top = face.candidates[0].score if face.candidates else MISSING
                mated.append((bool(names) and names[0] == person, top))
                others = [c.score for c in face.candidates if c.person["external_id"] != person]
                non_mated.append(others[0] if others else MISSING)
                advance(1)
    curve = metrics.cmc(ranks, options.top_k)
    fnir = {}
    for fpir in FPIRS:
        value, threshold = metrics.fnir_at_fpir(mated, non_mated, fpir)
        fnir[f"{fpir:g}"] = {"fnir": round(value, 4), "threshold": round(threshold, 4)} if fpir * len(non_mated) >= 1 else None
    return {
        "rank1": round(curve[0], 4), "rank5": round(curve[min(4, len(curve) - 1)], 4),
        "rank10": round(curve[min(9, len(curve) - 1)], 4), "cmc": [round(v, 4) for v in curve],
        "probes": len(probes), "gallery_persons": len(gallery), "gallery_failed_to_enroll": failed_gallery,
        "failed_to_acquire": no_face, "fnir_at_fpir": fnir,
    }


def calibrate(settings: Settings, root: Path, far: float, workers: int = 0,
              progress: Progress = _no_progress) -> dict[str, Any]:
    """Set the active model's decision threshold to the one giving `far` on the folder's impostor pairs."""
    folder = scan_labelled(root)
    settings = with_model(settings, resolve_model(settings))
    pipeline = build_pipeline(settings)
    analyses = analyse_paths(settings, pipeline.model_id, folder.all_paths, workers or settings.worker_count,
                             progress("analysing images", len(folder.all_paths)))
    result = impostor_thresholds(folder, subject_embeddings(analyses), (far,))[far]
    if not result.resolvable:
        raise IdentityError(f"{folder.root}: {result.impostors} impostor pairs cannot resolve FAR {far:g}; "
                            f"need at least {int(np.ceil(1 / far))}")
    source = (f"calibrated at FAR {far:g} on {folder.root} ({result.impostors} impostor pairs, "
              f"95% interval {result.low:.4f}..{result.high:.4f})")
    with Runtime.open(settings) as runtime:
        prepare_model(runtime, pipeline.model_id, pipeline.dim)
        with transaction(runtime.sessions) as session:
            model = find_model(session, pipeline.model_id)
            previous = model.threshold
            model.threshold, model.threshold_far, model.threshold_source = round(result.threshold, 6), far, source
            model.calibrated_at = datetime.now(timezone.utc)
    return {"model": pipeline.model_id, "far": far, "threshold": round(result.threshold, 6),
            "interval": [round(result.low, 6), round(result.high, 6)], "impostor_pairs": result.impostors,
            "previous_threshold": previous, "source": source}


def _threshold_entry(t: metrics.FarThreshold) -> dict[str, Any] | None:
    if not t.resolvable:
        return None
    return {"threshold": round(t.threshold, 4), "interval": [round(t.low, 4), round(t.high, 4)], "impostor_pairs": t.impostors}


def _pair_score(embeddings: dict[str, np.ndarray | None], a: str, b: str) -> float:
    va, vb = embeddings.get(a), embeddings.get(b)
    return MISSING if va is None or vb is None else float(va @ vb)


def _subject_only(outcome: Outcome) -> Outcome:
    """The analysis reduced to the labelled subject's face (see protocol.subject_face)."""
    if not isinstance(outcome, ImageFaces):
        return outcome
    face = subject_face(outcome)
    return dataclasses.replace(outcome, faces=() if face is None else (face,))
