"""`identity eval DIR` and `identity calibrate DIR`: measure a deployment on labelled photos.

Images are analysed once per (model, bytes) and cached. Identification goes through the
product's own enrollment writer and search service, in a temporary store unless
use_store is set. Protocols: identity.evaluation.protocol.

Open-set figures use every probe twice: as a mated search (its person is in the
gallery) and as a non-mated one, scored on the candidates that are not its person —
exactly what the search would return with that person held out of the gallery. Both
are scored by the product's decision rule (identity.evaluation.decision), which
`fnir_at_fpir` and `calibrate --fpir` use; `fnir_at_fpir_raw` keeps the rule before
templates: persons ranked by their best face, decided on the raw top-1 score.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from identity.app.core import App
from identity.app.registry import measured_model, record_model
from identity.errors import IdentityError, InvalidArgument
from identity.evaluation import metrics
from identity.evaluation.cache import Outcome, analyse_paths
from identity.evaluation.decision import (
    MIN_COHORT,
    NO_CANDIDATE,
    NORMALIZED,
    cohort_large_enough,
    decision_score,
    raw_score,
)
from identity.evaluation.protocol import LabelledFolder, genuine_pairs, impostor_pairs, scan_labelled, subject_face
from identity.faces import FacePipeline, ImageFaces
from identity.serialize import json_field
from identity.services.enrollment.writer import EnrollmentWriter, enroll_analysed
from identity.services.search.identify import NOT_SEARCHED, SearchOptions, search_faces
from identity.store.sql.db import transaction
from identity.store.sql.jobs import JobSpec
from identity.store.sql.model_rows import find_model
from identity.store.sql.persons import person_ids_by_external_id

FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (1e-2, 1e-3)
MISSING = NO_CANDIDATE  # the score of a pair or search without a face: below any threshold


@dataclass(frozen=True)
class EvalOptions:
    workers: int = 0
    pair_cap: int = 20_000  # genuine pairs at most (and as many impostor pairs)
    seed: int = 20240
    top_k: int = 10
    use_store: bool = False  # identification in the user's store instead of a temporary one
    identification: bool = True
    gallery_images: int = 1  # per person with more images than this; see identity.evaluation.protocol

    def __post_init__(self) -> None:
        if self.gallery_images < 1:
            raise InvalidArgument(f"gallery images per person must be at least 1 (got {self.gallery_images})")


Progress = Callable[[str, int | None], Callable[[int], None]]  # (stage, total) -> advance(n)


@dataclass(frozen=True)
class ScoreCurves:
    """What eval's plots draw beyond the figures (not printed)."""

    far: list[float]  # the ROC curve
    tar: list[float]
    genuine: list[float]  # every verification pair's score, by kind
    impostor: list[float]


@dataclass(frozen=True)
class Verification:
    """1:1 figures over genuine and impostor pairs of subject faces."""

    genuine_pairs: int
    impostor_pairs: int
    pairs_with_missing_face: int
    best_accuracy: float  # ten-fold
    best_accuracy_std: float
    best_accuracy_threshold: float
    tar_at_far: dict[str, float | None]  # by FAR; None where too few impostor pairs resolve it
    eer: float
    eer_threshold: float


@dataclass(frozen=True)
class NoVerification:
    verification: None  # written as null, with the reason beside it
    note: str


@dataclass(frozen=True)
class ThresholdAtFar:
    threshold: float
    interval: list[float]
    impostor_pairs: int


@dataclass(frozen=True)
class FnirAtFpir:
    fnir: float
    threshold: float


@dataclass(frozen=True)
class Identification:
    """Open-set identification: every probe searched against the protocol's gallery."""

    rank1: float
    rank5: float
    rank10: float
    cmc: list[float]
    probes: int
    gallery_persons: int
    gallery_failed_to_enroll: int
    failed_to_acquire: int  # probes without a searchable face
    fnir_at_fpir: dict[str, FnirAtFpir | None]  # by FPIR; None where too few non-mated searches resolve it
    fnir_at_fpir_raw: dict[str, FnirAtFpir | None]  # the same with the raw top-1 score
    gallery_images_per_person: int
    gallery_photos: int


@dataclass(frozen=True)
class EvalFigures:
    """Every figure, keyed as `identity eval --json` prints them."""

    model: str
    dataset: str
    persons: int
    images: int
    no_face_images: int
    unreadable_images: int
    verification: Verification | NoVerification = field(metadata=json_field(flatten=True))
    threshold_at_far: dict[str, ThresholdAtFar | None] = field(default_factory=dict)  # by FAR, over every impostor pair
    identification: Identification | None = field(default=None, metadata=json_field(flatten=True))
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class EvalReport:
    figures: EvalFigures = field(metadata=json_field(flatten=True))
    curves: ScoreCurves | None = field(metadata=json_field(skip=True))  # None without genuine pairs


@dataclass(frozen=True)
class FarCalibration:
    """`identity calibrate --far`: the threshold now recorded for the model (fields in output order)."""

    model: str
    far: float
    threshold: float
    interval: list[float]
    impostor_pairs: int
    previous_threshold: float | None
    source: str


@dataclass(frozen=True)
class FpirCalibrationResult:
    """`identity calibrate --fpir`: the threshold now recorded for the model (fields in output order)."""

    model: str
    fpir: float
    threshold: float
    interval: list[float]
    non_mated_searches: int
    gallery_persons: int
    gallery_images_per_person: int
    fnir: float
    previous_threshold: float | None
    source: str


def _no_progress(stage: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def evaluate_folder(
    app: App, root: Path, options: EvalOptions = EvalOptions(), progress: Progress = _no_progress
) -> EvalReport:
    started = time.perf_counter()
    # Evaluation measures the configured pack (else the default), never silently the store's pointer.
    pipeline = app.pipeline(measured_model(app.settings))
    folder = scan_labelled(root)
    if options.identification:
        _split(folder, options.gallery_images)  # a protocol without probes fails before the analyses
    model_id = pipeline.model_id
    analyses = _analyse(app, pipeline, folder, options.workers, progress)
    embeddings = subject_embeddings(analyses)
    figures, curves = verification(folder, embeddings, options)
    thresholds = {f"{far:g}": _threshold_entry(t) for far, t in impostor_thresholds(folder, embeddings).items()}
    found = identification(app, pipeline, folder, analyses, options, progress) if options.identification else None
    report = EvalFigures(
        model_id,
        str(folder.root),
        len(folder.persons),
        len(folder.all_paths),
        sum(1 for p in folder.all_paths if embeddings.get(p) is None),
        sum(1 for o in analyses.values() if not isinstance(o, ImageFaces)),
        figures,
        thresholds,
        found,
        round(time.perf_counter() - started, 1),
    )
    return EvalReport(report, curves)


def subject_embeddings(analyses: dict[str, Outcome]) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {}
    for path, outcome in analyses.items():
        face = subject_face(outcome) if isinstance(outcome, ImageFaces) else None
        out[path] = None if face is None else face.embedding
    return out


def verification(
    folder: LabelledFolder, embeddings: dict[str, np.ndarray | None], options: EvalOptions
) -> tuple[Verification | NoVerification, ScoreCurves | None]:
    genuine = genuine_pairs(folder, options.pair_cap, options.seed)
    if not genuine:
        return NoVerification(None, "no person has two images: no genuine pairs"), None
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
    return Verification(
        len(genuine),
        len(impostor),
        int(np.sum(scores == MISSING)),
        round(accuracy, 4),
        round(std, 4),
        round(best, 4),
        tar,
        round(equal_error, 4),
        round(eer_threshold, 4),
    ), ScoreCurves(far_curve.tolist(), tar_curve.tolist(), scores[labels].tolist(), scores[~labels].tolist())


def impostor_thresholds(
    folder: LabelledFolder, embeddings: dict[str, np.ndarray | None], fars: tuple[float, ...] = FARS
) -> dict[float, metrics.FarThreshold]:
    """Thresholds at each FAR over every cross-person pair of subject faces (all of them, for precision)."""
    paths = [p for p in folder.all_paths if embeddings.get(p) is not None]
    owner = {p: person for person in folder.persons for p in folder.images[person]}
    if len({owner[p] for p in paths}) < 2:
        raise IdentityError(f"{folder.root}: faces were found for fewer than two persons; cannot measure impostors")
    matrix = np.stack([embeddings[p] for p in paths]).astype(np.float32)
    labels = np.array([owner[p] for p in paths])
    chunks = []
    for start in range(0, len(paths), 512):
        block = matrix[start : start + 512] @ matrix.T
        rows = np.arange(start, min(start + 512, len(paths)))[:, None]
        upper = np.arange(len(paths))[None, :] > rows  # each unordered pair once
        different = labels[start : start + 512, None] != labels[None, :]
        chunks.append(block[upper & different])
    scores = np.concatenate(chunks)
    return {far: metrics.threshold_at_far(scores, far) for far in fars}


@dataclass(frozen=True)
class OpenSetSearches:
    """Every probe searched once: its rank, and its scores as a mated and as a non-mated search."""

    gallery_persons: int
    gallery_photos: int
    gallery_failed_to_enroll: int
    ranks: list[int | None]
    no_face: int
    mated: list[tuple[bool, float]]  # (true person ranked first, decision score)
    non_mated: list[float]  # decision score with the probe's own person held out
    mated_raw: list[tuple[bool, float]]  # the same with the raw top-1 score
    non_mated_raw: list[float]

    def fpir_threshold(self, fpir: float) -> metrics.FarThreshold:
        """The decision threshold at which at most `fpir` of the non-mated searches return a match."""
        return metrics.threshold_at_far(np.array(self.non_mated), fpir)

    def observed_fpir(self, threshold: float) -> float:
        """The share of non-mated searches that a decision at `threshold` calls a match."""
        return sum(1 for score in self.non_mated if score >= threshold) / max(len(self.non_mated), 1)

    def observed_fnir(self, threshold: float) -> float:
        """The share of mated searches whose person is not returned first as a match at `threshold`."""
        return sum(1 for correct, score in self.mated if not correct or score < threshold) / max(len(self.mated), 1)


def open_set_searches(
    app: App,
    pipeline: FacePipeline,
    folder: LabelledFolder,
    analyses: dict[str, Outcome],
    options: EvalOptions,
    progress: Progress = _no_progress,
) -> OpenSetSearches:
    """Enroll the protocol's gallery with `pipeline`'s model (into a scratch embedded store of its own
    unless use_store) and search every probe."""
    gallery, probes = _split(folder, options.gallery_images)
    with (
        tempfile.TemporaryDirectory(prefix="identity-eval-") as tmp,
        _gallery_app(app, Path(tmp), options.use_store, pipeline.model_id) as target,
    ):
        dep = target.deployment(write=True)
        writer = EnrollmentWriter(dep)
        items = [(JobSpec(path, person), _subject_only(analyses[path])) for person, path in gallery]
        advance = progress("enrolling gallery", None)
        enrolled = enroll_analysed(writer, items)
        advance(len(items))
        failed_gallery = len(items) - enrolled.counts.get("enrolled", 0)
        with dep.app.sessions() as session:
            person_ids = person_ids_by_external_id(session)
        ranks: list[int | None] = []
        mated: list[tuple[bool, float]] = []
        non_mated: list[float] = []
        mated_raw: list[tuple[bool, float]] = []
        non_mated_raw: list[float] = []
        no_face = 0
        # Searched with the product's rule whatever the store's threshold, which only affects the decision.
        search = SearchOptions(top_k=options.top_k, actor="identity eval")
        advance = progress("searching probes", len(probes))
        for person, path in probes:
            found = _subject_only(analyses[path])
            # A face too small to search is not searched by search either: a failure to acquire, as no face is.
            face = (
                search_faces(target, found, search).faces[0] if isinstance(found, ImageFaces) and found.faces else None
            )
            if face is None or face.decision == NOT_SEARCHED:
                no_face += 1
                ranks.append(None)
                for scores in (mated, mated_raw):
                    scores.append((False, MISSING))
                non_mated.append(MISSING)
                non_mated_raw.append(MISSING)
                advance(1)
                continue
            names = [c.person.external_id for c in face.candidates]
            ranks.append(names.index(person) + 1 if person in names else None)
            correct = bool(names) and names[0] == person
            # The held-out search is this one with the probe's own person taken out of the ranking.
            own = person_ids.get(person)
            everyone = [score for _, score in face.ranked]
            others = [score for pid, score in face.ranked if pid != own]
            mated.append((correct, decision_score(everyone, NORMALIZED)))
            non_mated.append(decision_score(others, NORMALIZED))
            # The rule before templates: persons by their best face, the raw top-1 score.
            best = dep.index.search_persons(found.faces[0].embedding, 2, 1)
            mated_raw.append((bool(best) and best[0].person_id == own, raw_score([h.score for h in best])))
            non_mated_raw.append(raw_score([h.score for h in best if h.person_id != own]))
            advance(1)
    return OpenSetSearches(
        len({person for person, _ in gallery}),
        len(gallery),
        failed_gallery,
        ranks,
        no_face,
        mated,
        non_mated,
        mated_raw,
        non_mated_raw,
    )


def _split(folder: LabelledFolder, gallery_images: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    gallery, probes = folder.split(gallery_images)
    if gallery_images > 1 and not probes:
        raise IdentityError(
            f"{folder.root}: no person has more than {gallery_images} images, "
            f"so --gallery-images {gallery_images} leaves no probes"
        )
    return gallery, probes


def identification(
    app: App,
    pipeline: FacePipeline,
    folder: LabelledFolder,
    analyses: dict[str, Outcome],
    options: EvalOptions,
    progress: Progress,
) -> Identification:
    searches = open_set_searches(app, pipeline, folder, analyses, options, progress)
    curve = metrics.cmc(searches.ranks, options.top_k)
    return Identification(
        round(curve[0], 4),
        round(curve[min(4, len(curve) - 1)], 4),
        round(curve[min(9, len(curve) - 1)], 4),
        [round(v, 4) for v in curve],
        len(searches.ranks),
        searches.gallery_persons,
        searches.gallery_failed_to_enroll,
        searches.no_face,
        _fnir_table(searches.mated, searches.non_mated),
        _fnir_table(searches.mated_raw, searches.non_mated_raw),
        options.gallery_images,
        searches.gallery_photos,
    )


def _fnir_table(mated: list[tuple[bool, float]], non_mated: list[float]) -> dict[str, FnirAtFpir | None]:
    table: dict[str, FnirAtFpir | None] = {}
    for fpir in FPIRS:
        value, threshold = metrics.fnir_at_fpir(mated, non_mated, fpir)
        resolved = fpir * len(non_mated) >= 1
        table[f"{fpir:g}"] = FnirAtFpir(round(value, 4), round(threshold, 4)) if resolved else None
    return table


def calibrate(app: App, root: Path, far: float, workers: int = 0, progress: Progress = _no_progress) -> FarCalibration:
    """Set the active model's decision threshold to the one giving `far` on the folder's impostor pairs."""
    folder = scan_labelled(root)
    pipeline = app.pipeline()
    analyses = _analyse(app, pipeline, folder, workers, progress)
    result = impostor_thresholds(folder, subject_embeddings(analyses), (far,))[far]
    if not result.resolvable:
        raise IdentityError(
            f"{folder.root}: {result.impostors} impostor pairs cannot resolve FAR {far:g}; "
            f"need at least {int(np.ceil(1 / far))}"
        )
    source = (
        f"calibrated at FAR {far:g} on {folder.root} ({result.impostors} impostor pairs, "
        f"95% interval {result.low:.4f}..{result.high:.4f})"
    )
    previous = _record_threshold(app, pipeline, result.threshold, source, far=far)
    return FarCalibration(
        pipeline.model_id,
        far,
        round(result.threshold, 6),
        [round(result.low, 6), round(result.high, 6)],
        result.impostors,
        previous,
        source,
    )


@dataclass(frozen=True)
class FpirCalibration:
    fpir: float
    threshold: metrics.FarThreshold  # over the non-mated searches' decision scores
    searches: OpenSetSearches


def fpir_calibration(
    app: App,
    pipeline: FacePipeline,
    folder: LabelledFolder,
    fpir: float,
    options: EvalOptions = EvalOptions(),
    progress: Progress = _no_progress,
) -> FpirCalibration:
    """The threshold at which at most `fpir` of the folder's non-mated searches (eval's protocol) return a match."""
    check_fpir(fpir)
    probes = len(_split(folder, options.gallery_images)[1])  # each probe is one non-mated search
    if fpir * probes < 1:  # checked before the analyses: a cold folder takes minutes
        raise IdentityError(
            f"{folder.root}: {probes} non-mated searches cannot resolve FPIR {fpir:g}; need at "
            f"least {int(np.ceil(1 / fpir))} (one per probe: each photo past a person's gallery ones)"
        )
    if not cohort_large_enough(len(folder.persons)):  # every person is in the gallery
        raise IdentityError(
            f"{folder.root}: {len(folder.persons)} persons are too few to calibrate the normalized "
            f"decision by FPIR; it needs at least {MIN_COHORT + 1} (a cohort for each search)"
        )
    analyses = _analyse(app, pipeline, folder, options.workers, progress)
    searches = open_set_searches(app, pipeline, folder, analyses, options, progress)
    return FpirCalibration(fpir, searches.fpir_threshold(fpir), searches)


def calibrate_fpir(
    app: App, root: Path, fpir: float, options: EvalOptions = EvalOptions(), progress: Progress = _no_progress
) -> FpirCalibrationResult:
    """Set the active model's decision threshold so that at most `fpir` of searches for unenrolled people match."""
    check_fpir(fpir)
    folder = scan_labelled(root)
    pipeline = app.pipeline()
    found = fpir_calibration(app, pipeline, folder, fpir, options, progress)
    t, searches = found.threshold, found.searches
    source = (
        f"calibrated at FPIR {fpir:g} on {folder.root} (gallery of {searches.gallery_persons} persons, "
        f"{t.impostors} non-mated searches, 95% interval {t.low:.4f}..{t.high:.4f})"
    )
    previous = _record_threshold(
        app, pipeline, t.threshold, source, fpir=fpir, gallery_persons=searches.gallery_persons
    )
    return FpirCalibrationResult(
        pipeline.model_id,
        fpir,
        round(t.threshold, 6),
        [round(t.low, 6), round(t.high, 6)],
        t.impostors,
        searches.gallery_persons,
        options.gallery_images,
        round(metrics.fnir_at_fpir(searches.mated, searches.non_mated, fpir)[0], 4),
        previous,
        source,
    )


def check_fpir(fpir: float) -> None:
    if not 0 < fpir < 1:  # a nan fails too
        raise InvalidArgument(f"FPIR {fpir} is out of range: it is a share of searches, strictly between 0 and 1")


def _record_threshold(
    app: App,
    pipeline: FacePipeline,
    threshold: float,
    source: str,
    far: float | None = None,
    fpir: float | None = None,
    gallery_persons: int | None = None,
) -> float | None:
    """Store the model's new threshold and what it was calibrated for; return the previous one."""
    record_model(app, pipeline.model_id, pipeline.dim)
    with transaction(app.sessions) as session:
        model = find_model(session, pipeline.model_id)
        previous = model.threshold
        model.threshold, model.threshold_far, model.threshold_source = round(threshold, 6), far, source
        model.threshold_fpir, model.threshold_gallery_persons = fpir, gallery_persons
        model.calibrated_at = datetime.now(UTC)
    return previous


def _analyse(
    app: App, pipeline: FacePipeline, folder: LabelledFolder, workers: int, progress: Progress
) -> dict[str, Outcome]:
    """Every image of the folder through `pipeline`'s model, from the evaluation cache where it has them."""
    settings = app.settings.replace(model=pipeline.model_id)
    return analyse_paths(
        settings,
        pipeline.model_id,
        folder.all_paths,
        workers or settings.worker_count,
        progress("analysing images", len(folder.all_paths)),
    )


@contextmanager
def _gallery_app(app: App, scratch: Path, use_store: bool, model: str) -> Iterator[App]:
    """Where eval enrolls its gallery, with `model` pinned so the services use the measured pack: the App's own
    store (use_store), else a scratch embedded one."""
    settings = app.settings.replace(model=model)
    if not use_store:
        settings = settings.replace(data_dir=scratch, database_url=None, qdrant_url=None, qdrant_api_key=None)
    with App.open(settings) as gallery_app:
        yield gallery_app


def _threshold_entry(t: metrics.FarThreshold) -> ThresholdAtFar | None:
    if not t.resolvable:
        return None
    return ThresholdAtFar(round(t.threshold, 4), [round(t.low, 4), round(t.high, 4)], t.impostors)


def _pair_score(embeddings: dict[str, np.ndarray | None], a: str, b: str) -> float:
    va, vb = embeddings.get(a), embeddings.get(b)
    return MISSING if va is None or vb is None else float(va @ vb)


def _subject_only(outcome: Outcome) -> Outcome:
    """The analysis reduced to the labelled subject's face (see protocol.subject_face)."""
    if not isinstance(outcome, ImageFaces):
        return outcome
    face = subject_face(outcome)
    return dataclasses.replace(outcome, faces=() if face is None else (face,))
