"""docker-compose.yml describes a deployment the app can actually run in (parsed, not run)."""

import re
from pathlib import Path

import yaml

from identity.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_pinned_and_health_checked() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "qdrant", "worker", "init"} <= set(services)
    for name in ("postgres", "qdrant"):
        image = services[name]["image"]
        assert re.search(r":v?\d+\.\d+", image), f"{name} image {image} is not pinned to a version"
        assert "healthcheck" in services[name]
    assert services["worker"]["command"] == ["identity", "worker"]
    assert services["init"]["command"] == ["identity", "init"]


def test_data_lives_in_named_volumes() -> None:
    named = set(COMPOSE["volumes"])
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("qdrant", "/qdrant/storage")):
        mounts = {m.split(":")[0]: m.split(":")[1] for m in COMPOSE["services"][name]["volumes"]}
        assert any(src in named and dst == target for src, dst in mounts.items()), name


def test_worker_environment_is_what_the_app_reads() -> None:
    env = COMPOSE["services"]["worker"]["environment"]
    assert env["IDENTITY_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["IDENTITY_DATABASE_URL"]
    assert env["IDENTITY_QDRANT_URL"] == "http://qdrant:6333"
    # Every variable must be one Settings understands: load them (placeholders filled in).
    filled = {k: re.sub(r"\$\{([A-Z_]+)[^}]*\}", "x", str(v)) for k, v in env.items()}
    settings = Settings.load(env=filled)
    assert not settings.embedded
    assert settings.database_url == filled["IDENTITY_DATABASE_URL"]
    assert settings.qdrant_api_key == "x"
    known = {"IDENTITY_" + f.upper() for f in Settings.__dataclass_fields__}
    assert set(env) <= known


def test_env_example_covers_every_required_variable() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required and required <= set(example)


def test_api_is_served_health_checked_on_readyz_and_shares_uploads_with_workers() -> None:
    api = COMPOSE["services"]["api"]
    assert api["command"][:2] == ["identity", "serve"] and "0.0.0.0" in api["command"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    env = {k: re.sub(r"\$\{([A-Z_]+)[^}]*\}", "x", str(v)) for k, v in api["environment"].items()}
    assert Settings.load(env=env).api.import_roots == "/photos"
    uploads = {m for m in api["volumes"] if m.endswith(":/data")}
    assert uploads and uploads <= set(COMPOSE["services"]["worker"]["volumes"])
