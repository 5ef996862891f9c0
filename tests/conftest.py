"""Shared fixtures: real databases (a SQLite file, a throwaway Postgres database).

Postgres comes from IDENTITY_TEST_POSTGRES_URL (set by .ci/run), else the local
server on 127.0.0.1:5432; tests that need it skip when neither answers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# As the `identity` and `identity serve` entry points do (identity.services.private_files): files the tests
# create are private, so `doctor` finds no wider modes in a data dir made in-process.
os.umask(0o077)

REPO_ROOT = Path(__file__).resolve().parent.parent
LFW_DIR = REPO_ROOT.parent / "shared" / "datasets" / "lfw-dev"
DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> str:
    return os.environ.get("IDENTITY_TEST_POSTGRES_URL") or DEFAULT_POSTGRES


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    url = make_url(_admin_url()).set(drivername="postgresql+psycopg2")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        if os.environ.get("CI"):
            raise RuntimeError(f"Postgres is required in CI: {exc}") from exc
        pytest.skip(f"no Postgres at {url.render_as_string(hide_password=True)}")
    yield url.render_as_string(hide_password=False)
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    name = f"identity_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_admin).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a real Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'identity.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")  # session: module-scoped fixtures that prepare a store use it too
def lfw_dir() -> Path:
    if not LFW_DIR.is_dir():
        pytest.skip(f"lfw-dev not found at {LFW_DIR}")
    return LFW_DIR


@pytest.fixture
def copy_labelled(lfw_dir: Path):
    """copy(root, people, per_person): a PERSON/IMAGE folder of each person's first lfw-dev photos."""

    def copy(root: Path, people: list[str], per_person: int) -> Path:
        for person in people:
            (root / person).mkdir(parents=True)
            for image in sorted((lfw_dir / person).iterdir())[:per_person]:
                shutil.copy(image, root / person / image.name)
        return root

    return copy


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point every store at tmp_path and drop IDENTITY_* variables from the environment."""
    for key in list(os.environ):
        if key.startswith("IDENTITY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "data"))
    return {"IDENTITY_DATA_DIR": str(tmp_path / "data")}


class StandInNet:
    """What a fine-tuned pack's recognizer looks like from outside: (n, 3, 150, 150) RGB 0..255 -> (n, 128)."""

    @staticmethod
    def build():
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 6, stride=6)  # 150 -> 25
                self.pool = torch.nn.AvgPool2d(5)  # 25 -> 5
                self.head = torch.nn.Linear(8 * 5 * 5, 128)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = self.conv(x / 127.5 - 1.0)  # the normalisation lives in the graph, as packs require
                return self.head(torch.flatten(self.pool(torch.tanh(x)), 1))

        torch.manual_seed(20240)
        return Net().eval()


@pytest.fixture(scope="session")
def stand_in_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A random-weight recognizer exported to ONNX once per session: (onnx, checkpoint, torch net)."""
    import warnings

    import torch

    net = StandInNet.build()
    folder = tmp_path_factory.mktemp("stand-in-pack")
    onnx_path, checkpoint = folder / "recognizer.onnx", folder / "checkpoint.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.rand(2, 3, 150, 150) * 255,),
            str(onnx_path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        )
    torch.save(net.state_dict(), checkpoint)
    return onnx_path, checkpoint, net


@pytest.fixture
def save_stand_in(stand_in_files):
    """save(data_dir, name=..., promoted=..., **manifest) -> "name@version", the stand-in saved as a local pack."""
    from identity.faces import save_local_pack

    onnx_path, checkpoint, _ = stand_in_files

    def save(data_dir: Path, name: str = "dlib-resnet-ft", promoted: bool = True, **manifest: object) -> str:
        content = {
            "base": "dlib-resnet@2",
            "aligner": "dlib-chip",
            "input_size": 150,
            "dim": 128,
            "mirror": True,
            "promoted": promoted,
            "threshold": None,
            "training": {"weights": "random, for tests"},
            **manifest,
        }
        return save_local_pack(data_dir, name, onnx_path, checkpoint, content)

    return save


def _trace_needles(vectors: list, ids: list[uuid.UUID], strings: list[str]) -> list[tuple[str, bytes]]:
    """Byte patterns that betray a vector, an id or a string, in every encoding the stores use.

    A vector is matched by each run of four components as little-endian float32 (segment
    files), big-endian float32 and CBOR floats (0xfa + big-endian: the Qdrant WAL); an id
    as text with and without dashes and as 16 raw bytes either way round; a string as UTF-8.
    """
    import numpy as np

    found: list[tuple[str, bytes]] = []
    for n, vector in enumerate(vectors):
        row = np.asarray(vector, dtype=np.float32)
        for start in range(0, len(row) - 3, 4):
            run = row[start : start + 4]
            big = run.astype(">f4").tobytes()
            found += [
                (f"vector {n} f32le", run.astype("<f4").tobytes()),
                (f"vector {n} f32be", big),
                (f"vector {n} cbor", b"".join(b"\xfa" + big[i : i + 4] for i in range(0, 16, 4))),
            ]
    for ident in ids:
        found += [
            (f"id {ident} text", str(ident).encode()),
            (f"id {ident} hex", ident.hex.encode()),
            (f"id {ident} bytes", ident.bytes),
            (f"id {ident} bytes_le", ident.bytes_le),
        ]
    found += [(f"string {text_!r}", text_.encode()) for text_ in strings]
    return found


@pytest.fixture
def find_traces():
    """find(root, vectors=, ids=, strings=) -> {file: [what was found]} over every file under root."""

    def find(
        root: Path, vectors: list = (), ids: list[uuid.UUID] = (), strings: list[str] = ()
    ) -> dict[str, list[str]]:
        needles = _trace_needles(list(vectors), list(ids), list(strings))
        hits: dict[str, list[str]] = {}
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            data = path.read_bytes()
            data = data[: len(data.rstrip(b"\0")) + 16]  # preallocated logs are zeros past their end
            named = sorted({name for name, needle in needles if needle in data})
            if named:
                hits[str(path.relative_to(root))] = named
        return hits

    return find


class UpsertStopper:
    """Makes the embedded engine's upserts raise `Stop` after the first `allowed` calls (a crash mid-run)."""

    class Stop(Exception):
        pass

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from identity.store.vectors import EdgeIndex

        self._monkeypatch, self._engine, self._real = monkeypatch, EdgeIndex, EdgeIndex.upsert

    def arm(self, allowed: int = 1) -> None:
        calls, real, stop = [], self._real, self.Stop

        def upsert_then_stop(index, points):
            calls.append(len(points))
            if len(calls) > allowed:
                raise stop()
            real(index, points)

        self._monkeypatch.setattr(self._engine, "upsert", upsert_then_stop)

    def undo(self) -> None:
        self._monkeypatch.setattr(self._engine, "upsert", self._real)


@pytest.fixture
def upsert_stopper(monkeypatch: pytest.MonkeyPatch) -> UpsertStopper:
    return UpsertStopper(monkeypatch)
