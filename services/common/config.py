"""Typed configuration, declared once.

Every setting is read from environment variables with the ``STRATUS_`` prefix
(nested sections use ``__``: ``STRATUS_API_GATEWAY__LISTEN``) and, optionally,
from a TOML file named by ``STRATUS_CONFIG_FILE``. Environment beats file,
file beats default. ``python -m services.common.config`` prints the reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "STRATUS_"
CONFIG_FILE_ENV = "STRATUS_CONFIG_FILE"


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


_LISTEN_HELP = "host:port the service's gRPC server binds to."


def _listen(port: int):
    return Field(f"127.0.0.1:{port}", description=_LISTEN_HELP)


class ServiceSection(_Section):
    listen: str = Field(description=_LISTEN_HELP)
    endpoint: str = Field(
        "", description="host:port other services dial to reach it; empty means `listen`."
    )
    shutdown_grace_s: float = Field(
        10.0, gt=0, description="Seconds in-flight calls may finish after SIGTERM."
    )

    @property
    def target(self) -> str:
        return self.endpoint or self.listen


class DatabaseSection(ServiceSection):
    database_url: str = Field(
        "",
        description=(
            "SQLAlchemy URL of the service's own database (sqlite:///... or "
            "postgresql://...); empty means a SQLite file in the state directory."
        ),
    )


class ApiGatewaySection(DatabaseSection):
    listen: str = _listen(8790)


class PlacementSection(DatabaseSection):
    listen: str = _listen(8791)


class SchedulerSection(ServiceSection):
    listen: str = _listen(8792)


class QuotaSection(ServiceSection):
    listen: str = _listen(8793)


class HostAgentSection(ServiceSection):
    listen: str = _listen(8794)


class TelemetrySection(_Section):
    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where traces go: nowhere, stderr, or an OTLP/gRPC collector."
    )
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4317", description="OTLP collector address when exporter is otlp."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    state_dir: Path = Field(
        Path("state"), description="Directory for SQLite files, keys and local state."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every service."
    )
    etcd_endpoints: str = Field(
        "127.0.0.1:2379", description="Comma-separated host:port list of the etcd cluster."
    )
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    api_gateway: ApiGatewaySection = Field(default_factory=ApiGatewaySection)
    placement: PlacementSection = Field(default_factory=PlacementSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    quota: QuotaSection = Field(default_factory=QuotaSection)
    hostagent: HostAgentSection = Field(default_factory=HostAgentSection)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} is not a readable file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings() -> Settings:
    return Settings()


def reference() -> str:
    """A markdown table of every setting: its variable, type, default and help."""
    rows = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            type_name = getattr(annotation, "__name__", str(annotation)).replace("|", "\\|")
            default = field.get_default(call_default_factory=True)
            rows.append(
                f"| `{prefix}{name.upper()}` | {type_name} | `{default}` | {field.description} |"
            )

    walk(Settings, ENV_PREFIX)
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference())
