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
    max_build_attempts: int = Field(
        3, ge=1, le=10, description="Hosts a server's spawn is tried on before it goes to ERROR."
    )
    reconcile_interval_s: float = Field(
        10.0, gt=0, description="How often the leader replica repairs what crashes left behind."
    )
    scheduling_concurrency: int = Field(
        8,
        ge=1,
        description="Scheduler calls one replica has in flight; further builds wait their "
        "turn, so a burst of creates queues here instead of timing out in placement.",
    )
    reconcile_hosts_per_pass: int = Field(
        200,
        ge=1,
        le=1000,
        description="Providers one reconcile pass looks at (a page, round robin), so a pass "
        "costs the same at 10 or 10,000 hosts; of those, only hosts where placement's "
        "generation or our servers changed since they last agreed are compared.",
    )
    stuck_after_s: float = Field(
        120.0,
        gt=0,
        description="A task unchanged this long is resumed by the reconciler (a crash left it).",
    )
    leader_ttl_s: int = Field(
        10, ge=2, description="TTL of the reconciler's leadership lease in etcd."
    )


class PlacementSection(DatabaseSection):
    listen: str = _listen(8791)


class SchedulerSection(ServiceSection):
    listen: str = _listen(8792)
    candidate_sample_size: int = Field(
        50,
        ge=1,
        description=(
            "Hosts sampled at random from placement per decision; all are read only "
            "when the sample leaves too few."
        ),
    )
    max_alternates: int = Field(
        3, ge=0, le=20, description="Alternate hosts returned with each chosen host."
    )
    host_subset_size: int = Field(
        3,
        ge=1,
        description="Choose at random among this many best hosts, so replicas do not collide.",
    )
    ram_weight_multiplier: float = Field(
        1.0, description="Free RAM weight: positive spreads servers, negative packs them."
    )
    vcpu_weight_multiplier: float = Field(
        1.0, description="Free VCPU weight: positive spreads servers, negative packs them."
    )
    soft_affinity_weight_multiplier: float = Field(
        1.0, ge=0, description="How strongly soft-affinity prefers hosts of the group."
    )
    soft_anti_affinity_weight_multiplier: float = Field(
        1.0, ge=0, description="How strongly soft-anti-affinity avoids hosts of the group."
    )
    group_lock_ttl_s: int = Field(
        30,
        ge=5,
        description="TTL (s) of the etcd lease behind the lock held while placing a server "
        "group's members: a replica that dies holding it frees it within the TTL; a lock lasts "
        "at least two thirds of it.",
    )


class QuotaSection(DatabaseSection):
    listen: str = _listen(8793)
    # Limits of a project no admin set another limit for; -1 means unlimited.
    default_instances: int = Field(10, ge=-1, description="Servers per project; -1 = unlimited.")
    default_cores: int = Field(20, ge=-1, description="Server vCPUs per project; -1 = unlimited.")
    default_ram_mb: int = Field(
        51200, ge=-1, description="Server memory (MB) per project; -1 = unlimited."
    )
    default_key_pairs: int = Field(100, ge=-1, description="Key pairs per project; -1 = unlimited.")
    default_server_groups: int = Field(
        10, ge=-1, description="Server groups per project; -1 = unlimited."
    )
    default_server_group_members: int = Field(
        10, ge=-1, description="Servers per server group; -1 = unlimited."
    )


class FakeDriverSection(_Section):
    vcpus: int = Field(16, ge=1, description="CPUs the fake host reports.")
    ram_mb: int = Field(65536, ge=1, description="Memory (MB) the fake host reports.")
    disk_gb: int = Field(1000, ge=1, description="Disk (GB) the fake host reports.")
    images: str = Field(
        "cirros,debian-12,ubuntu-24.04",
        description="Comma-separated image references the fake host can boot.",
    )
    delay_s: float = Field(0.0, ge=0, description="Injected delay of every server operation.")
    failure_rate: float = Field(
        0.0, ge=0, le=1, description="Share of spawn/reboot/power calls that fail on purpose."
    )
    seed: int = Field(0, description="Seed of the injected failures, for repeatable runs.")
    without: str = Field(
        "",
        description=(
            "Comma-separated capabilities the fake host pretends to lack (reboot_soft, "
            "reboot_hard, power_off, power_on), to exercise drivers that cannot do everything."
        ),
    )


class LibvirtDriverSection(_Section):
    uri: str = Field(
        "qemu:///system",
        description="libvirt connection URI; test:///default or test:///path/node.xml in tests.",
    )
    image_dir: Path = Field(
        Path("/var/lib/stratus/images"),
        description="Where images live: an image reference names a file in this directory.",
    )
    disk_gb: int = Field(
        0, ge=0, description="Disk (GB) to report; 0 means the size of image_dir's filesystem."
    )


class RedfishDriverSection(_Section):
    machines_file: Path = Field(
        Path("/etc/stratus/machines.toml"),
        description=(
            "TOML file of the bare-metal machines this host drives ([[machine]]: name, bmc, "
            "credentials, profile) and the images they boot ([images])."
        ),
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="Seconds one BMC request may take to connect, and to answer."
    )
    power_timeout_s: float = Field(
        300.0, gt=0, description="Seconds a power change may take before the call fails."
    )
    shutdown_timeout_s: float = Field(
        60.0,
        ge=0,
        description="Seconds power off waits for a graceful shutdown before forcing it.",
    )


class ContainerDriverSection(_Section):
    socket_url: str = Field(
        "unix:///run/podman/podman.sock",
        description=(
            "podman's REST API; the host runs `podman system service` there (the agent "
            "does not start it)."
        ),
    )
    stop_timeout_s: int = Field(
        10,
        ge=0,
        description="Seconds power off and soft reboot wait after SIGTERM before SIGKILL.",
    )
    vcpus: int = Field(0, ge=0, description="CPUs to report; 0 means the host's.")
    ram_mb: int = Field(0, ge=0, description="Memory (MB) to report; 0 means the host's.")
    disk_gb: int = Field(
        0, ge=0, description="Disk (GB) to report; 0 means the size of podman's storage."
    )


class HostAgentSection(ServiceSection):
    listen: str = _listen(8794)
    host: str = Field("", description="This host's name in placement and etcd; empty = hostname.")
    availability_zone: str = Field(
        "default", min_length=1, description="The availability zone this host belongs to."
    )
    driver: Literal["fake", "libvirt", "container", "redfish"] = Field(
        "fake", description="Which driver runs servers."
    )
    fake: FakeDriverSection = Field(default_factory=FakeDriverSection)
    libvirt: LibvirtDriverSection = Field(default_factory=LibvirtDriverSection)
    container: ContainerDriverSection = Field(default_factory=ContainerDriverSection)
    redfish: RedfishDriverSection = Field(default_factory=RedfishDriverSection)
    provider_uuid: str = Field(
        "",
        description=(
            "Resource provider uuid to use; empty means the one kept in the state directory "
            "(made on first start)."
        ),
    )
    reserved_vcpus: int = Field(0, ge=0, description="VCPUs kept back for the host itself.")
    reserved_ram_mb: int = Field(512, ge=0, description="Memory (MB) kept back for the host.")
    reserved_disk_gb: int = Field(0, ge=0, description="Disk (GB) kept back for the host.")
    cpu_allocation_ratio: float = Field(4.0, gt=0, description="VCPU overcommit factor.")
    ram_allocation_ratio: float = Field(1.0, gt=0, description="Memory overcommit factor.")
    disk_allocation_ratio: float = Field(1.0, gt=0, description="Disk overcommit factor.")
    inventory_interval_s: float = Field(
        60.0, gt=0, description="How often the agent re-reads capacity and reports changes."
    )
    power_sync_interval_s: float = Field(
        10.0, gt=0, description="How often the agent compares power states with the driver's."
    )
    liveness_ttl_s: int = Field(
        15,
        ge=2,
        description="TTL (s) of the agent's liveness lease in etcd, renewed every third of "
        "it: a dead host is seen within this time (bench/results/liveness.md).",
    )


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
    etcd_prefix: str = Field(
        "/stratus", description="Key prefix of everything Stratus keeps in etcd."
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
