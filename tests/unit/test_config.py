"""Configuration: environment beats file beats default; mistakes are refused."""

from __future__ import annotations

import pydantic
import pytest

from services.common.config import Settings, reference


def test_defaults(monkeypatch):
    monkeypatch.delenv("STRATUS_CONFIG_FILE", raising=False)
    settings = Settings()
    assert settings.api_gateway.listen == "127.0.0.1:8790"
    assert settings.telemetry.exporter == "none"


def test_environment_overrides_file_which_overrides_defaults(tmp_path, monkeypatch):
    config = tmp_path / "stratus.toml"
    config.write_text(
        'log_level = "DEBUG"\n[api_gateway]\nlisten = "0.0.0.0:9000"\ndatabase_url = "sqlite:///x.db"\n'
    )
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(config))
    monkeypatch.setenv("STRATUS_API_GATEWAY__LISTEN", "127.0.0.1:9001")
    settings = Settings()
    assert settings.log_level == "DEBUG"  # file
    assert settings.api_gateway.database_url == "sqlite:///x.db"  # file
    assert settings.api_gateway.listen == "127.0.0.1:9001"  # environment wins


def test_a_missing_config_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        Settings()


def test_typos_and_bad_values_are_refused(tmp_path, monkeypatch):
    config = tmp_path / "stratus.toml"
    config.write_text("[api_gateway]\nlisten_on = 'x'\n")
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(config))
    with pytest.raises(pydantic.ValidationError, match="listen_on"):
        Settings()
    monkeypatch.delenv("STRATUS_CONFIG_FILE")
    monkeypatch.setenv("STRATUS_TELEMETRY__EXPORTER", "jaeger")
    with pytest.raises(pydantic.ValidationError, match="exporter"):
        Settings()


def test_reference_lists_every_variable():
    text = reference()
    for variable in (
        "STRATUS_STATE_DIR",
        "STRATUS_API_GATEWAY__DATABASE_URL",
        "STRATUS_TELEMETRY__EXPORTER",
    ):
        assert f"`{variable}`" in text
