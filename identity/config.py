"""One Settings object, read from environment variables and an optional TOML file.

Precedence: environment > config file > defaults. Top-level fields read
``IDENTITY_<FIELD>`` (e.g. ``IDENTITY_DATABASE_URL``); fields of a section read
``IDENTITY_<SECTION>__<FIELD>`` (e.g. ``IDENTITY_FACES__UPSAMPLE``) and live under
``[section]`` in the file. The file is ``IDENTITY_CONFIG`` if set, else
``<data dir>/config.toml`` if it exists.

Every value is checked at load by type and by the range (or choices) its field declares
with `setting(...)`, so a bad value stops the command with one line naming it, instead of
doing nothing (a chunk size of 0), overflowing deep in a vector engine, or rejecting every photo.

Nothing here is a module-level singleton: callers build Settings once and pass it
down, so tests can point every part at temporary stores.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from identity.errors import ConfigError

ENV_PREFIX = "IDENTITY_"
SECRET_FIELDS = {"qdrant_api_key", "session_secret"}


class SubjectRule(StrEnum):  # enroll.subject, and `identity enroll --subject`: which faces of a photo to enroll
    dominant = "dominant"
    central = "central"
    all = "all"
    reject = "reject"


SUBJECT_RULES = tuple(SubjectRule)


@dataclass(frozen=True)
class Allowed:
    """What a setting accepts beyond its type: a closed range [low, high] or a set of choices.

    `pattern` (a regular expression the whole value must match) admits instead of `choices`
    when some choice stands for many values (cuda:N); `choices` then only shows them.
    """

    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""

    def admits(self, value: Any) -> bool:
        if value is None:  # an optional setting left unset: its user picks the default
            return True
        if self.pattern:
            return re.fullmatch(self.pattern, str(value)) is not None
        if self.choices:
            return value in self.choices
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.high is None:
            return f"at least {self.low:g}"
        return f"{self.low:g} to {self.high:g}"


def setting(
    default: Any, low: float | None = None, high: float | None = None, choices: tuple[str, ...] = (), pattern: str = ""
) -> Any:
    """A field whose value must lie in [low, high] (either end open when None), among `choices` or match `pattern`."""
    return field(default=default, metadata={"allowed": Allowed(low, high, choices, pattern)})


@dataclass(frozen=True)
class FaceSettings:
    """Detection, alignment, recognition and the quality gate."""

    # auto: the YuNet pack for a new store when YuNet is installed, else dlib-resnet; yunet: the YuNet pack;
    # hog (fast) / cnn (MMOD, slower, finds harder faces): dlib-resnet with that dlib detector (auto/yunet mean
    # hog there)
    detector: str = setting("auto", choices=("auto", "hog", "cnn", "yunet"))
    # dlib detector upsampling: 1 finds faces down to ~40 px wide; each step quadruples the pixels
    upsample: int = setting(1, 0, 4)
    # Smallest face height wanted, in original pixels: large photos are detected at the scale that keeps such
    # a face findable. None: each detector's measured default (HOG 64, YuNet 48; docs/accuracy.md, docs/models.md).
    min_face_px: int | None = setting(None, 8, 4096)
    onnx_detector: str | None = None  # insightface-onnx pack: SCRFD/RetinaFace .onnx
    onnx_recognizer: str | None = None  # insightface-onnx pack: ArcFace/CosFace .onnx
    torch_checkpoint: str | None = None  # torch-iresnet pack: .pth state dict
    torch_arch: str = setting("r50", choices=("r18", "r34", "r50", "r100"))  # torch-iresnet pack
    allow_download: bool = False  # insightface-onnx: fetch buffalo_l when no paths are set
    # YuNet pack: its score cut. On det-dev: 0.75 -> 88.6% of faces, 0.11 false per photo; 0.7 -> 89.9%, 0.18
    # (0.8 finds fewer with as many false): see docs/models.md.
    yunet_min_score: float = setting(0.75, 0, 1)
    max_faces: int = setting(200, 1, 100_000)  # faces kept per photo (highest scores); the rest are dropped and counted
    min_det_score: float = 0.0  # any finite number: each detector has its own scale
    min_iod_px: float = setting(20.0, 0)  # inter-ocular distance below which a face is too small
    # Search's own minimum (enrollment keeps min_iod_px): a smaller probe face is not searched. On lfw-dev
    # probes shrunk to 8-24 px (benchmarks/tiny_faces.py) FPIR stayed within 2x of the calibrated one down
    # to 8 px; 12 is that with a 1.5x margin for real small faces' compression, blur and noise.
    min_search_iod_px: float = setting(12.0, 0)
    min_blur: float = setting(10.0, 0)  # variance of the Laplacian below which a crop is blurry
    # On lfw-dev a 50 degree yaw gate (landmark estimate) refused 15 of 2,848 gallery faces
    # in three-quarter view that the recognizer still matches; 65 keeps out true profiles.
    max_yaw_deg: float = setting(65.0, 0, 180)
    # Head roll (towards a shoulder) above which a face is rejected as `tilted`; yaw above its gate is `profile`.
    max_roll_deg: float = setting(45.0, 0, 180)
    # Where torch recognizers and ONNX models run (identity.faces.device): auto is CUDA when there is one, else
    # the CPU; cuda[:N] refuses to start without that GPU. dlib's HOG and OpenCV's YuNet run on the CPU regardless.
    device: str = setting("auto", choices=("auto", "cpu", "cuda", "cuda:N"), pattern=r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class VectorSettings:
    """HNSW parameters shared by both vector engines."""

    # Measured on 100k x 512-d (benchmarks/vector_index.py): recall@10 0.975 at ~2.7 ms with
    # int8 candidates rescored in float; m=16 needed ef=1024 for the same recall.
    hnsw_m: int = setting(32, 4, 128)
    hnsw_ef_construct: int = setting(128, 4, 4096)  # HNSW candidate list while building the graph
    search_ef: int = setting(512, 1, 32768)  # HNSW candidate list per search (int8 candidates, rescored in float)
    exact: bool = False  # brute-force search (small galleries, evaluation)
    # Search warns, and doctor reports a graph to build, when more vectors of a collection than this are
    # outside a search graph (the embedded store before its optimize): each search scans them one by one.
    # The embedded store builds a segment's graph once it holds 10 MB of vectors (20,000 of 128 dimensions)
    # or this many, whichever is fewer, so enrolling never leaves more to scan.
    max_exact_scan: int = setting(50_000, 100)
    # Embedded store: allocate the disk blocks of its sparse files up front (on open and before each
    # write chunk), so another program filling the disk later cannot make a write fault (SIGBUS).
    preallocate: bool = False


@dataclass(frozen=True)
class EnrollSettings:
    """Bulk enrollment and the job queue."""

    dominant_face_ratio: float = setting(
        2.0, 1
    )  # a photo with several faces enrolls the largest only if its area is this many times the next
    # Which face(s) of a photo with several enroll for its person: dominant (the largest, by the
    # ratio above), central (nearest the centre, as `identity eval` picks), all, or reject.
    subject: str = setting("dominant", choices=SUBJECT_RULES)
    lease_seconds: int = setting(
        600, 1, 30 * 86400
    )  # a claimed job whose worker vanished is claimed again after this long
    chunk_size: int = setting(16, 1, 10_000)  # images claimed and written per transaction


@dataclass(frozen=True)
class ApiSettings:
    """`identity serve`: the HTTP API."""

    import_roots: str | None = None  # folders (joined by os.pathsep) whose files POST /v1/enrollments may name
    max_upload_mb: float = setting(
        20.0, 0.001, 100_000
    )  # a request body above this is refused (413) before it is read in full
    inference_workers: int = setting(0, 0, 1024)  # threads running detection+embedding; 0: one per core
    queue_limit: int = setting(
        16, 0, 1_000_000
    )  # requests waiting for inference beyond those running; more get 503 + Retry-After
    # A request without a valid key (header or session cookie) may send at most this much body (413 beyond):
    # only a caller who signed in gets max_upload_mb. Counted as it arrives, chunked bodies included.
    anonymous_body_kb: float = setting(64.0, 1, 1_000_000)
    max_images_per_request: int = setting(10, 1, 10_000)  # photos in one search; more get 413
    # Summed over a search's photos, read from their headers before decoding; more get 413. Sized from measured
    # cost with detection at full resolution: ~0.31 s per MP of 12 MP photos with the HOG pack (0.095 with YuNet)
    # on a shared core, so a search at this limit ends within request_deadline_seconds; 100 MP did not.
    max_pixels_per_request: int = setting(60_000_000, 1, 10_000_000_000)
    request_deadline_seconds: float = setting(
        30.0, 0.01, 86_400
    )  # a search still running after this gets 503 + Retry-After (checked between images and stages)
    metrics_bind: str | None = None  # "host:port" serving /metrics without a key (e.g. for Prometheus on a private net)
    # Signs the review UI's session cookies. Required when several servers share a deployment;
    # unset, a single server generates one and keeps it in <data dir>/session_secret.
    session_secret: str | None = None
    # The server runs behind a TLS-terminating proxy: the UI's session cookie is `Secure` even though
    # the server itself sees plain http (with --proxy-headers, an https X-Forwarded-Proto does it too).
    behind_tls: bool = False
    cors_origins: str | None = None  # comma-separated origins allowed cross-origin calls (CORS); unset: none
    auth_failures: int = setting(10, 1, 1_000_000)  # failed authentications per key id or client address ...
    auth_window_s: float = setting(60.0, 1, 86_400)  # ... within this window, before 429 + Retry-After
    # A POST with an `Idempotency-Key` header answered within this many hours is answered again, not redone.
    idempotency_hours: float = setting(24.0, 0.001, 8_760)
    # Comma-separated secrets signing completion webhooks (X-Identity-Signature): the first signs, so a new
    # secret goes first while receivers still accept the old. Unset: one generated in <data dir>/webhook_secret.
    webhook_secrets: str | None = None
    webhook_timeout_s: float = setting(5.0, 0.1, 60)  # one delivery attempt waits this long for the receiver
    webhook_attempts: int = setting(6, 1, 100)  # a delivery is `failed` after this many attempts ...
    webhook_backoff_s: float = setting(30.0, 0.01, 86_400)  # ... waiting this long after the first, x4 after each


@dataclass(frozen=True)
class ReviewSettings:
    """The review loop: match reviews and the faces searches returned as unknown."""

    # `identity report reviews` warns when the share of reviewed matches that were confirmed falls below this.
    precision_warning: float = setting(0.95, 0, 1)
    # Keep the faces searches return as unknown (vector + small thumbnail) so `identity cluster
    # --from-searches` can group them. Off: they are biometric data of people who are not enrolled.
    keep_unknown_faces: bool = False
    unknown_retention_days: float = setting(
        30.0, 0, 36_500
    )  # kept unknown faces are erased from the data files after this long
    # Keep a small JPEG of each searched face's aligned crop with its search-log row, for `match` decisions
    # and `unknown` ones within near_threshold of the threshold, so a reviewer sees the face that was matched.
    keep_search_thumbnails: bool = True
    search_thumbnail_retention_days: float = setting(
        90.0, 0, 36_500
    )  # searched faces' thumbnails are erased after this long
    # An `unknown` whose decision score is this close below the threshold is shown "close to the threshold".
    near_threshold: float = setting(0.03, 0, 1)


@dataclass(frozen=True)
class Settings:
    # The embedded stores (SQLite file, Qdrant Edge shards), uploads, installed detectors, local model packs.
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    database_url: str | None = None  # None: SQLite file under data_dir
    qdrant_url: str | None = None  # None: embedded Qdrant Edge under data_dir; ":memory:" for local mode
    qdrant_api_key: str | None = None  # API key of the Qdrant server
    qdrant_timeout: float = setting(10.0, 0.001, 86_400)  # seconds
    qdrant_retries: int = setting(3, 0, 100)  # retries of a Qdrant request on connection errors
    # None: the store's active model (set by `identity reindex`), else dlib-resnet; a value pins it.
    model: str | None = None
    workers: int = setting(0, 0, 1024)  # 0: one per CPU core
    faces: FaceSettings = field(default_factory=FaceSettings)
    vectors: VectorSettings = field(default_factory=VectorSettings)
    enroll: EnrollSettings = field(default_factory=EnrollSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    config_file: Path | None = None

    @property
    def sql_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'identity.db'}"

    @property
    def embedded(self) -> bool:
        return self.qdrant_url is None

    @property
    def edge_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get(ENV_PREFIX + "DATA_DIR") or default_data_dir()).expanduser()
        path = config_file or _config_path(env, data_dir)
        file_values = _read_toml(path) if path else {}
        values = _merge(cls, file_values, env, ENV_PREFIX)
        values["config_file"] = path
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Every effective setting, secrets masked, for `identity config show`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                out[f.name] = {k: _masked(k, v) for k, v in dataclasses.asdict(value).items()}
            else:
                out[f.name] = _masked(f.name, value)
        out["effective_database_url"] = mask_url(self.sql_url)
        out["database_url"] = mask_url(self.database_url) if self.database_url else None
        out["vector_engine"] = "qdrant-edge (embedded)" if self.embedded else "qdrant server"
        return out


def _masked(name: str, value: Any) -> Any:
    if name in SECRET_FIELDS and value:
        return "****" + str(value)[-2:] if len(str(value)) > 8 else "****"
    return _plain(value)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "identity"


def mask_url(url: str) -> str:
    """Hide the password of a URL such as postgresql://user:secret@host/db."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, has_pw, _ = creds.partition(":")
    return f"{scheme}://{user}{':****' if has_pw else ''}@{host}"


def _config_path(env: Mapping[str, str], data_dir: Path) -> Path | None:
    explicit = env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (IDENTITY_CONFIG) does not exist")
        return path
    candidate = data_dir / "config.toml"
    return candidate if candidate.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _merge(
    cls: type, file_values: Mapping[str, Any], env: Mapping[str, str], prefix: str, file_prefix: str = ""
) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(file_values) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) in config file: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "config_file":
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            section = file_values.get(f.name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"config file: [{f.name}] must be a table")
            values[f.name] = kind(**_merge(kind, section, env, f"{prefix}{f.name.upper()}__", f"{f.name}."))
            continue
        env_name = prefix + f.name.upper()
        if env_name in env and env[env_name] != "":
            values[f.name] = _checked(env[env_name], kind, f, env_name)
        elif f.name in file_values:
            values[f.name] = _checked(file_values[f.name], kind, f, f"config file: {file_prefix}{f.name}")
    return values


def _checked(raw: Any, kind: Any, f: dataclasses.Field[Any], where: str) -> Any:
    """The value of `raw` for field `f`, or a ConfigError naming `where` and what is allowed."""
    value = _coerce(raw, kind, where)
    allowed = f.metadata.get("allowed")
    if allowed is not None and not allowed.admits(value):
        raise ConfigError(f"{where}: {raw!r} is not allowed (expected {allowed})")
    return value


def _coerce(raw: Any, kind: Any, where: str) -> Any:
    """Turn a raw env/file value into the field's declared type, or say why not."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(str(raw)).expanduser()
        if kind in (int, float):
            return _number(raw, kind, where)
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def _number(raw: Any, kind: type, where: str) -> int | float:
    """An int or a finite float. TOML gives numbers typed: 1.7 for an int is refused, not cut to 1."""
    if isinstance(raw, bool):  # TOML true is not 1
        raise ValueError(raw)
    if kind is int and isinstance(raw, float):
        if not raw.is_integer():
            raise ConfigError(f"{where}: {raw!r} is not a whole number")
        raw = int(raw)
    value = kind(raw)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {raw!r} is not a finite number")
    return value


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
