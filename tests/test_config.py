from pathlib import Path

import pytest

from identity.config import Settings, mask_url
from identity.errors import ConfigError


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    s = Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path)})
    assert s.embedded
    assert s.sql_url == f"sqlite:///{tmp_path / 'identity.db'}"
    assert s.edge_dir == tmp_path / "vectors"
    assert s.model is None  # the store's active model, else dlib-resnet
    assert s.config_file is None


def test_environment_overrides_top_level_and_sections(tmp_path: Path) -> None:
    s = Settings.load(env={
        "IDENTITY_DATA_DIR": str(tmp_path),
        "IDENTITY_DATABASE_URL": "postgresql://u@db/identity",
        "IDENTITY_QDRANT_URL": "http://qdrant:6333",
        "IDENTITY_FACES__UPSAMPLE": "2",
        "IDENTITY_VECTORS__EXACT": "yes",
    })
    assert s.sql_url == "postgresql://u@db/identity"
    assert not s.embedded
    assert s.faces.upsample == 2
    assert s.vectors.exact is True


def test_config_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('model = "insightface-onnx"\nworkers = 3\n[faces]\nupsample = 0\nmin_blur = 5.5\n')
    s = Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path), "IDENTITY_WORKERS": "1"})
    assert s.config_file == cfg  # found under the data dir without being named
    assert s.model == "insightface-onnx"
    assert s.workers == 1
    assert s.faces.upsample == 0 and s.faces.min_blur == 5.5


@pytest.mark.parametrize("env, message", [
    ({"IDENTITY_WORKERS": "many"}, "IDENTITY_WORKERS: 'many' is not a valid int"),
    ({"IDENTITY_FACES__MIN_BLUR": "x"}, "IDENTITY_FACES__MIN_BLUR"),
    ({"IDENTITY_VECTORS__EXACT": "perhaps"}, "IDENTITY_VECTORS__EXACT"),
    ({"IDENTITY_CONFIG": "/nonexistent/identity.toml"}, "does not exist"),
])
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path), **env})


def test_unknown_or_malformed_file_content_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("modle = 'typo'\n")
    with pytest.raises(ConfigError, match="modle"):
        Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path)})
    (tmp_path / "config.toml").write_text("model = \n")
    with pytest.raises(ConfigError, match="config.toml"):
        Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path)})


def test_describe_masks_secrets(tmp_path: Path) -> None:
    s = Settings.load(env={
        "IDENTITY_DATA_DIR": str(tmp_path),
        "IDENTITY_DATABASE_URL": "postgresql://identity:hunter2@db:5432/identity",
        "IDENTITY_QDRANT_API_KEY": "supersecretkey",
    })
    text = repr(s.describe())
    assert "hunter2" not in text and "supersecretkey" not in text
    assert s.describe()["database_url"] == "postgresql://identity:****@db:5432/identity"


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_url("postgresql://postgres@127.0.0.1/db") == "postgresql://postgres@127.0.0.1/db"
