import json
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
    s = Settings.load(
        env={
            "IDENTITY_DATA_DIR": str(tmp_path),
            "IDENTITY_DATABASE_URL": "postgresql://u@db/identity",
            "IDENTITY_QDRANT_URL": "http://qdrant:6333",
            "IDENTITY_FACES__UPSAMPLE": "2",
            "IDENTITY_VECTORS__EXACT": "yes",
        }
    )
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


@pytest.mark.parametrize(
    "env, message",
    [
        ({"IDENTITY_WORKERS": "many"}, "IDENTITY_WORKERS: 'many' is not a valid int"),
        ({"IDENTITY_FACES__MIN_BLUR": "x"}, "IDENTITY_FACES__MIN_BLUR"),
        ({"IDENTITY_VECTORS__EXACT": "perhaps"}, "IDENTITY_VECTORS__EXACT"),
        ({"IDENTITY_CONFIG": "/nonexistent/identity.toml"}, "does not exist"),
    ],
)
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
    s = Settings.load(
        env={
            "IDENTITY_DATA_DIR": str(tmp_path),
            "IDENTITY_DATABASE_URL": "postgresql://identity:hunter2@db:5432/identity",
            "IDENTITY_QDRANT_API_KEY": "supersecretkey",
        }
    )
    text = repr(s.describe())
    assert "hunter2" not in text and "supersecretkey" not in text
    assert s.describe()["database_url"] == "postgresql://identity:****@db:5432/identity"


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_url("postgresql://postgres@127.0.0.1/db") == "postgresql://postgres@127.0.0.1/db"


BAD_SETTINGS = [  # (environment, or TOML under [section], the setting's name as the line must give it)
    ({"IDENTITY_ENROLL__CHUNK_SIZE": "0"}, "IDENTITY_ENROLL__CHUNK_SIZE"),  # queued and processed nothing
    ({"IDENTITY_FACES__UPSAMPLE": "-1"}, "IDENTITY_FACES__UPSAMPLE"),  # TypeError in dlib
    ({"IDENTITY_VECTORS__SEARCH_EF": "-1"}, "IDENTITY_VECTORS__SEARCH_EF"),  # OverflowError in Qdrant
    ({"IDENTITY_VECTORS__HNSW_M": "-1"}, "IDENTITY_VECTORS__HNSW_M"),
    ({"IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS": "nan"}, "IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS"),  # ValueError
    ({"IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS": "1e12"}, "IDENTITY_REVIEW__UNKNOWN_RETENTION_DAYS"),  # Overflow
    ({"IDENTITY_FACES__MIN_BLUR": "inf"}, "IDENTITY_FACES__MIN_BLUR"),  # rejected every photo
    ({"IDENTITY_FACES__DETECTOR": "hgo"}, "IDENTITY_FACES__DETECTOR"),
    ({"IDENTITY_QDRANT_TIMEOUT": "-inf"}, "IDENTITY_QDRANT_TIMEOUT"),
    ("[faces]\nupsample = 1.7\n", "faces.upsample"),  # became 1
    ("workers = true\n", "workers"),  # became 1
    ("[review]\nprecision_warning = 1.5\n", "review.precision_warning"),
]


@pytest.mark.parametrize("bad, name", BAD_SETTINGS, ids=[name for _, name in BAD_SETTINGS])
def test_every_bad_setting_stops_the_command_with_one_line_naming_it(
    capsys, clean_env, monkeypatch, tmp_path: Path, bad: dict[str, str] | str, name: str
) -> None:
    from identity_cli.main import main

    if isinstance(bad, str):
        (tmp_path / "config.toml").write_text(bad)
        monkeypatch.setenv("IDENTITY_CONFIG", str(tmp_path / "config.toml"))
    else:
        for key, value in bad.items():
            monkeypatch.setenv(key, value)
    code = main(["config", "show", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and name in err, err
    assert "allowed" in err or "whole number" in err or "finite" in err or "not a valid" in err, err
    assert json.loads(out)["error_type"] == "ConfigError"


def test_values_at_the_ends_of_a_range_and_whole_floats_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[faces]\nupsample = 2.0\nmin_blur = 0\n[enroll]\nchunk_size = 1\n")
    s = Settings.load(env={"IDENTITY_DATA_DIR": str(tmp_path), "IDENTITY_VECTORS__HNSW_M": "4"})
    assert s.faces.upsample == 2 and isinstance(s.faces.upsample, int)
    assert s.faces.min_blur == 0.0 and s.enroll.chunk_size == 1 and s.vectors.hnsw_m == 4


def test_every_range_admits_its_default() -> None:
    """A declared range that refused the shipped default would break every install."""
    import dataclasses

    defaults = Settings()
    sections = [defaults] + [
        getattr(defaults, f.name)
        for f in dataclasses.fields(defaults)
        if dataclasses.is_dataclass(getattr(defaults, f.name))
    ]
    assert len(sections) == 6
    for section in sections:
        for f in dataclasses.fields(section):
            allowed = f.metadata.get("allowed")
            assert allowed is None or allowed.admits(getattr(section, f.name)), f.name


def test_every_setting_is_in_the_configuration_reference() -> None:
    """A setting nobody can find is a setting nobody sets right: each one's variable is documented."""
    import dataclasses
    from pathlib import Path

    from identity.config import Settings

    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    missing = []
    for top in dataclasses.fields(Settings):
        section = getattr(Settings(), top.name)
        if not dataclasses.is_dataclass(section):
            if f"`IDENTITY_{top.name.upper()}`" not in page and top.name != "config_file":
                missing.append(f"IDENTITY_{top.name.upper()}")
            continue
        for field in dataclasses.fields(section):
            name = f"IDENTITY_{top.name.upper()}__{field.name.upper()}"
            if f"`{name}`" not in page:
                missing.append(name)
    assert missing == []
