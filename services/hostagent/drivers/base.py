"""The seam between Stratus and a hypervisor: plain inputs, plain outputs.

A driver knows nothing about protobuf, databases or placement. The host agent
calls it with a ServerSpec and reads back DriverServer and HostResources. Every
driver passes the conformance suite in tests/drivers/. Errors are the shared
StratusError classes with driver-specific codes (see the functions below), so
the agent maps them to gRPC like any other error.

Idempotency is the agent's promise to callers, and drivers keep it: spawning
an id that exists returns the existing server, destroying a missing id is a
no-op, power calls on a server already in the wanted state succeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from services.common.errors import Conflict, Internal, InvalidArgument, NotFound


class PowerState(StrEnum):
    """What the hypervisor says about a server, as Nova users know it."""

    NOSTATE = "NOSTATE"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SHUTDOWN = "SHUTDOWN"
    CRASHED = "CRASHED"


@dataclass(frozen=True)
class ServerSpec:
    """What to build: the flavor's sizes and the image, for one server id."""

    server_id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    image_ref: str
    # What placement holds for the server on this host: provider uuid -> class -> amount.
    # A driver with child providers learns from it which one to use (a bare-metal
    # machine); empty when the caller did not say (direct calls, tests).
    allocations: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverServer:
    """A server as the driver sees it now."""

    server_id: str
    name: str
    power_state: PowerState
    vcpus: int
    ram_mb: int
    disk_gb: int
    image_ref: str


@dataclass(frozen=True)
class HostResources:
    """What the host has in total (not what is free): placement subtracts usage."""

    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True)
class ChildProvider:
    """A provider the driver hands out whole: one allocation takes all its resources."""

    # Stable across restarts: placement's allocations name it, and spawn finds it by it.
    uuid: str
    # Unique on this host; in placement the provider is called "<host>/<name>".
    name: str
    resources: dict[str, int]


@dataclass(frozen=True)
class HostDescription:
    driver: str
    # The hypervisor's own version string ("libvirt 9.0.0 (test)", "fake 1").
    hypervisor_version: str
    resources: HostResources
    # Free memory as the driver computes it; some hypervisors report 0.
    free_ram_mb: int
    # Standard or CUSTOM_* trait names the host offers (COMPUTE_*, HW_CPU_*...).
    traits: frozenset[str] = field(default_factory=frozenset)
    # Providers below the host's own, one per unit the driver hands out whole (a
    # bare-metal machine). When there are any, resources is what they have together,
    # and the host's own provider offers no VCPU, MEMORY_MB or DISK_GB: a server gets
    # its room only by taking a child.
    children: tuple[ChildProvider, ...] = ()


class Capability(StrEnum):
    """Operations beyond spawn and destroy (which every driver must do).

    A driver lists what it can do; the agent refuses the rest with
    hostagent.unsupported_operation, and api_gateway refuses it before
    touching the server (409 compute.unsupported_operation)."""

    REBOOT_SOFT = "reboot_soft"
    REBOOT_HARD = "reboot_hard"
    POWER_OFF = "power_off"
    POWER_ON = "power_on"


ALL_CAPABILITIES = frozenset(Capability)


class Driver(Protocol):
    name: str
    capabilities: frozenset[Capability]

    async def describe_host(self) -> HostDescription: ...

    async def spawn(self, spec: ServerSpec) -> DriverServer:
        """Create and start the server; the existing one if the id is known."""

    async def destroy(self, server_id: str) -> None:
        """Stop and remove the server and everything made for it; no-op if unknown."""

    async def reboot(self, server_id: str, hard: bool) -> DriverServer: ...

    async def power_off(self, server_id: str) -> DriverServer: ...

    async def power_on(self, server_id: str) -> DriverServer: ...

    async def get(self, server_id: str) -> DriverServer:
        """The server, or server_not_found()."""

    async def list_servers(self) -> list[DriverServer]:
        """Every server this driver created on the host (never anyone else's)."""

    async def close(self) -> None: ...


def server_not_found(server_id: str) -> NotFound:
    return NotFound(
        f"server {server_id} does not exist on this host", code="hostagent.server_not_found"
    )


def image_not_found(image_ref: str, known: str) -> InvalidArgument:
    return InvalidArgument(
        f"image {image_ref!r} is not available on this host ({known})",
        code="hostagent.image_not_found",
    )


def check_fits(spec: ServerSpec, host: HostResources) -> None:
    """Refuse sizes no server of this host could ever have (placement checks what is free)."""
    if spec.vcpus < 1 or spec.ram_mb < 1 or spec.disk_gb < 0:
        raise InvalidArgument(
            f"a server needs at least 1 VCPU and 1 MB of RAM; got {spec.vcpus} VCPU, "
            f"{spec.ram_mb} MB, {spec.disk_gb} GB disk",
            code="hostagent.invalid_flavor",
        )
    if spec.vcpus > host.vcpus or spec.ram_mb > host.ram_mb or spec.disk_gb > host.disk_gb:
        raise InvalidArgument(
            f"a server of {spec.vcpus} VCPU, {spec.ram_mb} MB RAM and {spec.disk_gb} GB disk "
            f"can never fit this host ({host.vcpus} VCPU, {host.ram_mb} MB, {host.disk_gb} GB)",
            code="hostagent.flavor_too_large",
        )


def unsupported(driver: str, capability: Capability) -> Conflict:
    return Conflict(
        f"the {driver} driver cannot {capability.value.replace('_', ' ')}",
        code="hostagent.unsupported_operation",
    )


def driver_failed(action: str, server_id: str, detail: str) -> Internal:
    return Internal(
        f"{action} of server {server_id} failed on the host: {detail}",
        code="hostagent.driver_error",
    )
