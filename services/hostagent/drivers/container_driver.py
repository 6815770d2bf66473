"""The container driver: each server is a Podman container, over podman's REST API.

The container is named `stratus-<id>` and labelled `dev.stratus.server-id=<id>`;
a container without that label is someone else's and is never listed or touched,
even when its name looks like ours. The flavor becomes limits: vcpus a CFS quota
(vcpus x the period), ram_mb a memory limit with no swap on top. Containers get
no network (`--network none`). An image reference names a local image: the
driver never pulls, so no registry needs to be reachable.

Podman holds every bit of state, so a new driver (an agent restart) finds the
same servers. `podman system service` belongs to the host, not to the driver:
systemd's podman.socket on a real host, the Procfile under `make run`, a fixture
in tests. Containers outlive both the service and the agent (conmon holds them).

Power, as Nova users know it: power off is a graceful stop (SIGTERM to the
container's PID 1, SIGKILL after stop_timeout_s), like an ACPI shutdown that
ends in pulling the plug; a soft reboot is that stop and a start; a hard reboot
kills at once and starts; destroy kills at once and removes. Unlike an ACPI
reboot, a soft reboot always completes: a guest deaf to SIGTERM is killed.

The podman client blocks, so calls run in the driver's own threads (a graceful
stop holds one for up to stop_timeout_s). No lock is needed: podman serializes
operations on one container, and names are unique, so two spawns of one id
cannot both create.

Limitation: disk_gb is recorded, not enforced (overlay and vfs have no quota).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

import os_traits
from podman import PodmanClient
from podman.domain.containers import Container
from podman.errors import APIError
from podman.errors import NotFound as PodmanNotFound

from services.common.errors import Internal, InvalidArgument, NotFound, Unavailable
from services.hostagent.drivers.base import (
    ALL_CAPABILITIES,
    DriverServer,
    HostDescription,
    HostResources,
    PowerState,
    ServerSpec,
    check_fits,
    driver_failed,
    image_not_found,
    server_not_found,
)

NAME_PREFIX = "stratus-"
# The ownership mark: only containers with this label (equal to the id in their name) are ours.
ID_LABEL = "dev.stratus.server-id"
NAME_LABEL = "dev.stratus.name"
IMAGE_LABEL = "dev.stratus.image"
DISK_LABEL = "dev.stratus.disk-gb"
DRIVER_ERROR = "hostagent.driver_error"  # the code of base.driver_failed()
CPU_PERIOD_US = 100_000
MIB = 1024**2
GIB = 1024**3
# Seconds any API call may take, on top of a stop's own timeout.
API_TIMEOUT_S = 30
# Threads for podman calls; graceful stops hold theirs for up to stop_timeout_s.
WORKERS = 8
VALID_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
POWER_STATES = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "created": PowerState.SHUTDOWN,
    "configured": PowerState.SHUTDOWN,
    "initialized": PowerState.SHUTDOWN,
    "stopping": PowerState.SHUTDOWN,
    "stopped": PowerState.SHUTDOWN,
    "exited": PowerState.SHUTDOWN,
}
# podman's names for CPU architectures, as os-traits spells them (HW_ARCH_*).
ARCHES = {"amd64": "X86_64", "arm64": "AARCH64", "386": "I686"}

T = TypeVar("T")


class ContainerDriver:
    name = "container"
    # A container has all four; soft and hard differ in SIGTERM-then-wait versus SIGKILL.
    capabilities = ALL_CAPABILITIES

    def __init__(
        self,
        socket_url: str,
        stop_timeout_s: int = 10,
        vcpus: int = 0,
        ram_mb: int = 0,
        disk_gb: int = 0,
    ) -> None:
        self.socket_url = socket_url
        self.stop_timeout_s = stop_timeout_s
        # What to report instead of the host's own figures; 0 = the host's.
        self._sizes = HostResources(vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb)
        # Constructing the client does no I/O; the first call connects.
        self._client = PodmanClient(base_url=socket_url, timeout=API_TIMEOUT_S)
        self._threads = ThreadPoolExecutor(WORKERS, thread_name_prefix="podman")
        # The host's size: `podman info` takes about 0.3 s, and the size does not change.
        self._resources: HostResources | None = None

    async def describe_host(self) -> HostDescription:
        return await self._run("describe", None, self._describe)

    async def spawn(self, spec: ServerSpec) -> DriverServer:
        return await self._run("spawn", spec.server_id, self._spawn, spec)

    async def destroy(self, server_id: str) -> None:
        await self._run("destroy", server_id, self._destroy, server_id)

    async def reboot(self, server_id: str, hard: bool) -> DriverServer:
        action = "hard reboot" if hard else "soft reboot"
        return await self._run(action, server_id, self._reboot, server_id, hard)

    async def power_off(self, server_id: str) -> DriverServer:
        return await self._run("power off", server_id, self._power_off, server_id)

    async def power_on(self, server_id: str) -> DriverServer:
        return await self._run("power on", server_id, self._power_on, server_id)

    async def get(self, server_id: str) -> DriverServer:
        return await self._run("look-up", server_id, self._get, server_id)

    async def list_servers(self) -> list[DriverServer]:
        return await self._run("list", None, self._list)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._client.close)
        self._threads.shutdown(wait=False)

    async def _run(
        self, action: str, server_id: str | None, call: Callable[..., T], *args: object
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, self._guarded, action, server_id, call, *args
        )

    # Everything below runs in one of the driver's threads.

    def _guarded(
        self, action: str, server_id: str | None, call: Callable[..., T], *args: object
    ) -> T:
        with _failures(action, server_id, self.socket_url):
            return call(*args)

    def _describe(self) -> HostDescription:
        info = self._client.info()
        self._resources = resources = self._size(info)
        running = self._client.containers.list(filters={"status": "running"})
        # Every running container's limit counts, ours or not; one without a limit counts 0.
        used_mb = 0
        for container in running:
            with suppress(PodmanNotFound):  # removed since the list
                container.reload()
                used_mb += container.attrs["HostConfig"].get("Memory", 0) // MIB
        runtime = info["host"]["ociRuntime"]
        runtime_version = (runtime.get("version") or runtime["name"]).splitlines()[0]
        arch = info["host"]["arch"]
        traits = {f"HW_ARCH_{ARCHES.get(arch, arch.upper())}"}
        return HostDescription(
            driver=self.name,
            hypervisor_version=f"podman {info['version']['Version']} ({runtime_version})",
            resources=resources,
            free_ram_mb=max(0, resources.ram_mb - used_mb),
            traits=frozenset(traits & set(os_traits.get_traits())),
        )

    def _host_resources(self) -> HostResources:
        """The host's size as last read; describe_host (every inventory interval) re-reads it."""
        if self._resources is None:
            self._resources = self._size(self._client.info())
        return self._resources

    def _size(self, info: dict) -> HostResources:
        host, store = info["host"], info["store"]
        return HostResources(
            vcpus=self._sizes.vcpus or host["cpus"],
            ram_mb=self._sizes.ram_mb or host["memTotal"] // MIB,
            # The filesystem of podman's storage, where containers write.
            disk_gb=self._sizes.disk_gb or store["graphRootAllocated"] // GIB,
        )

    def _spawn(self, spec: ServerSpec) -> DriverServer:
        if not VALID_ID.fullmatch(spec.server_id):
            raise InvalidArgument(
                f"server id {spec.server_id!r} cannot name a container: use letters, digits, "
                "'_', '.' and '-' (a UUID fits)",
                code="hostagent.invalid_server_id",
            )
        name = NAME_PREFIX + spec.server_id
        existing = self._named(name)
        if existing is not None:
            return self._existing(spec.server_id, existing)
        if not self._image_exists(spec.image_ref):
            raise image_not_found(spec.image_ref, self._known_images())
        check_fits(spec, self._host_resources())
        try:
            container = self._client.containers.create(
                spec.image_ref,
                name=name,
                labels={
                    ID_LABEL: spec.server_id,
                    NAME_LABEL: spec.name,
                    IMAGE_LABEL: spec.image_ref,
                    DISK_LABEL: str(spec.disk_gb),
                },
                network_mode="none",
                cpu_period=CPU_PERIOD_US,
                cpu_quota=spec.vcpus * CPU_PERIOD_US,
                mem_limit=spec.ram_mb * MIB,
                # Equal to the memory limit: no swap on top of what the flavor says.
                memswap_limit=spec.ram_mb * MIB,
            )
        except APIError as exc:
            # A concurrent spawn of the same id may have created it since the look-up.
            # Podman claims the name before the container can be inspected, so look
            # again for a moment before calling it a failure.
            existing = self._named_soon(name)
            if existing is not None:
                return self._existing(spec.server_id, existing)
            raise driver_failed("spawn", spec.server_id, _detail(exc)) from None
        try:
            container.start()
        except APIError as exc:
            # Leave nothing behind: a half-made server must not show up in list_servers.
            with suppress(APIError):
                container.remove(force=True, v=True)
            raise driver_failed("spawn", spec.server_id, _detail(exc)) from None
        return self._server(container)

    def _named(self, name: str) -> Container | None:
        try:
            return self._client.containers.get(name)
        except PodmanNotFound:
            return None

    def _named_soon(self, name: str, wait_s: float = 2.0) -> Container | None:
        deadline = time.monotonic() + wait_s
        while True:
            found = self._named(name)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def _existing(self, server_id: str, container: Container) -> DriverServer:
        """What spawning an id whose container name is taken returns: ours, or a refusal."""
        if not _is_ours(container):
            raise driver_failed(
                "spawn",
                server_id,
                f"a container named {container.name} exists that Stratus did not make; "
                "remove or rename it, or use another server id",
            )
        return self._server(container)

    def _destroy(self, server_id: str) -> None:
        try:
            container = self._container(server_id)
            if container.status == "running":
                container.stop(timeout=0, ignore=True)  # SIGKILL at once
            # force also removes a paused container.
            container.remove(force=True, v=True)
        except (NotFound, PodmanNotFound):
            return  # not there, or removed meanwhile

    def _reboot(self, server_id: str, hard: bool) -> DriverServer:
        container = self._container(server_id)
        state = _power_state(container)
        if not hard and state is not PowerState.RUNNING:
            raise driver_failed("soft reboot", server_id, f"it is {state}; use a hard reboot")
        if container.status == "paused":
            container.unpause()  # podman cannot restart a paused container
        container.restart(timeout=self.stop_timeout_s if not hard else 0)
        return self._server(container)

    def _power_off(self, server_id: str) -> DriverServer:
        container = self._container(server_id)
        if container.status == "paused":
            container.unpause()  # a frozen PID 1 cannot hear SIGTERM, and podman refuses
        container.stop(timeout=self.stop_timeout_s, ignore=True)
        return self._server(container)

    def _power_on(self, server_id: str) -> DriverServer:
        container = self._container(server_id)
        if container.status == "paused":
            container.unpause()
        elif container.status != "running":
            container.start()
        return self._server(container)

    def _get(self, server_id: str) -> DriverServer:
        return self._server(self._container(server_id))

    def _list(self) -> list[DriverServer]:
        servers = []
        for container in self._client.containers.list(all=True, filters={"label": ID_LABEL}):
            if _is_ours(container):
                with suppress(NotFound, PodmanNotFound):  # removed since the list
                    servers.append(self._server(container))
        return servers

    def _container(self, server_id: str) -> Container:
        """Our container of this id, or server_not_found() (also for anyone else's)."""
        if not VALID_ID.fullmatch(server_id):
            raise server_not_found(server_id)
        try:
            container = self._client.containers.get(NAME_PREFIX + server_id)
        except PodmanNotFound:
            raise server_not_found(server_id) from None
        if not _is_ours(container):
            raise server_not_found(server_id)
        return container

    def _server(self, container: Container) -> DriverServer:
        container.reload()  # the state after what was just done
        labels, limits = container.labels, container.attrs["HostConfig"]
        period = limits.get("CpuPeriod") or CPU_PERIOD_US
        return DriverServer(
            server_id=labels[ID_LABEL],
            name=labels.get(NAME_LABEL, ""),
            power_state=_power_state(container),
            vcpus=max(0, limits.get("CpuQuota", 0)) // period,
            ram_mb=limits.get("Memory", 0) // MIB,
            disk_gb=int(labels.get(DISK_LABEL, "0")),
            image_ref=labels.get(IMAGE_LABEL, ""),
        )

    def _image_exists(self, image_ref: str) -> bool:
        try:
            return bool(image_ref) and self._client.images.exists(image_ref)
        except APIError as exc:
            if exc.status_code is None:
                raise  # podman unreachable: not the image's fault
            return False  # a malformed reference names no image

    def _known_images(self) -> str:
        tags = sorted(t for image in self._client.images.list() for t in image.tags)
        more = f" and {len(tags) - 10} more" if len(tags) > 10 else ""
        return f"local images: {', '.join(tags[:10]) or 'none'}{more}; the driver never pulls"


def _is_ours(container: Container) -> bool:
    server_id = container.labels.get(ID_LABEL)
    return bool(server_id) and container.name == NAME_PREFIX + server_id


def _power_state(container: Container) -> PowerState:
    state = container.attrs.get("State")
    if isinstance(state, dict) and state.get("OOMKilled"):
        return PowerState.CRASHED  # the kernel killed it for going over its memory limit
    return POWER_STATES.get(container.status, PowerState.NOSTATE)


def _detail(exc: APIError) -> str:
    return exc.explanation or str(exc)


@contextmanager
def _failures(action: str, server_id: str | None, socket_url: str) -> Iterator[None]:
    """Turns podman client errors into Stratus errors; server_id None for host-wide calls."""
    try:
        yield
    except APIError as exc:
        if exc.status_code is None:  # no answer at all: the client wraps the OSError
            raise Unavailable(
                f"cannot reach podman at {socket_url}: {exc.__cause__ or _detail(exc)}; "
                "is `podman system service` running there?",
                code="hostagent.hypervisor_unavailable",
            ) from None
        if server_id is None:
            detail = _detail(exc)
            raise Internal(f"{action} failed on the host: {detail}", code=DRIVER_ERROR) from None
        if isinstance(exc, PodmanNotFound):  # removed by someone mid-call
            raise server_not_found(server_id) from None
        raise driver_failed(action, server_id, _detail(exc)) from None
