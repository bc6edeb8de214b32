"""Settings: environment variables, the TOML file, command-line overrides, and documented fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from dicomflow.config import DuplicatePolicy, Settings


def test_defaults_are_the_embedded_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DICOMFLOW_CONFIG", "DICOMFLOW_DATA_DIR", "DICOMFLOW_DIMSE__PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()  # type: ignore[call-arg]  # data_dir comes from the environment
    assert (settings.dimse.port, settings.dimse.ae_title, settings.http.port) == (11112, "DICOMFLOW", 8080)
    assert settings.index_url.startswith("sqlite:///") and settings.index_url.endswith("index.sqlite3")
    assert settings.ingest.duplicate_policy is DuplicatePolicy.REJECT


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMFLOW_DIMSE__PORT", "4242")
    monkeypatch.setenv("DICOMFLOW_INGEST__DUPLICATE_POLICY", "keep-both")
    settings = Settings()  # type: ignore[call-arg]  # data_dir comes from the environment
    assert settings.dimse.port == 4242
    assert settings.ingest.duplicate_policy is DuplicatePolicy.KEEP_BOTH


def test_toml_file_and_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "dicomflow.toml"
    toml.write_text('data_dir = "/srv/dicom"\n[dimse]\nae_title = "PACS1"\nport = 104\n')
    monkeypatch.setenv("DICOMFLOW_CONFIG", str(toml))
    monkeypatch.setenv("DICOMFLOW_DIMSE__PORT", "11113")
    settings = Settings()  # type: ignore[call-arg]  # data_dir comes from the environment
    assert settings.data_dir == Path("/srv/dicom")
    assert settings.dimse.ae_title == "PACS1"
    assert settings.dimse.port == 11113  # the environment wins over the file


def test_command_line_overrides() -> None:
    settings = Settings().with_overrides(data_dir=Path("/x"), **{"dimse.port": 5, "http.port": None})  # type: ignore[call-arg]  # data_dir comes from the environment
    assert settings.data_dir == Path("/x") and settings.dimse.port == 5 and settings.http.port == 8080


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    found = []
    for name, field in model.model_fields.items():
        found.append((prefix + name, field.description))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_fields(annotation, f"{prefix}{name}."))
    return found


def test_every_setting_is_documented() -> None:
    missing = [name for name, description in _fields(Settings) if not description]
    assert missing == []


def test_the_toml_file_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DICOMFLOW_CONFIG",
        "DICOMFLOW_DATA_DIR",
        "DICOMFLOW_DIMSE__PORT",
        "DICOMFLOW_DIMSE__AE_TITLE",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "dicomflow.toml").write_text('[dimse]\nae_title = "PACS2"\nport = 104\n')
    monkeypatch.setenv("DICOMFLOW_DIMSE__PORT", "11113")

    given = Settings(data_dir=tmp_path)  # as --data-dir gives it
    monkeypatch.setenv("DICOMFLOW_DATA_DIR", str(tmp_path))
    from_environment = Settings()  # type: ignore[call-arg]  # data_dir comes from the environment

    for settings in (given, from_environment):
        assert settings.dimse.ae_title == "PACS2"
        assert settings.dimse.port == 11113  # the environment wins over the file
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DICOMFLOW_DATA_DIR")
    assert Settings().dimse.ae_title == "DICOMFLOW"  # type: ignore[call-arg]  # ./dicomflow-data has none
