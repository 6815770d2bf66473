"""The redfish driver: each server is a whole bare-metal machine, driven through its BMC.

The machines come from the enrolment file (machines.py). In placement each is
a child of the host's provider with one unit of its profile's resource class
(CUSTOM_BAREMETAL_GOLD: 1), so a flavor asking for that class gets a whole
machine and the scheduler, which picks hosts by their root provider, works
unchanged. Spawn takes the machine whose provider placement's allocation
names (or, when the caller gave none, the first free machine that fits),
points its boot at the image (PXE, its own disk, or an ISO as virtual media),
and powers it on. Destroy powers it off and forgets the server; it does not
wipe the disk.

Bookkeeping (which machine runs which server) happens in the event loop with no
await between a check and its change, so two spawns cannot take one machine;
it is saved to the state directory after every change (assignments.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import sushy

from services.common.errors import Conflict, InvalidArgument, StratusError
from services.hostagent.drivers.base import (
    ALL_CAPABILITIES,
    ChildProvider,
    DriverServer,
    HostDescription,
    HostResources,
    PowerState,
    ServerSpec,
    driver_failed,
    image_not_found,
    server_not_found,
)
from services.hostagent.drivers.redfish.assignments import Assignment, Assignments
from services.hostagent.drivers.redfish.bmc import Bmc
from services.hostagent.drivers.redfish.machines import Enrolment

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = (0.05, 0.1, 0.2, 0.5, 1.0)  # power-state polls back off to once a second
STATE_FILE = "redfish.json"


class RedfishDriver:
    name = "redfish"
    # Redfish resets: On, ForceOff/GracefulShutdown, ForceRestart, GracefulRestart.
    capabilities = ALL_CAPABILITIES

    def __init__(
        self,
        enrolment: Enrolment,
        state_dir: Path,
        request_timeout_s: float = 10.0,
        power_timeout_s: float = 300.0,
        shutdown_timeout_s: float = 60.0,
    ) -> None:
        self.machines = {m.name: m for m in enrolment.machines}
        self.images = enrolment.images
        self.power_timeout_s = power_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._bmcs = {m.name: Bmc(m, request_timeout_s) for m in enrolment.machines}
        self._assignments = Assignments(state_dir / STATE_FILE)
        self._providers = self._assignments.provider_uuids(sorted(self.machines))
        self._machine_by_provider = {uuid: m for m, uuid in self._providers.items()}
        lost = {a.machine for a in self._assignments.servers.values()} - self.machines.keys()
        if lost:
            # Handing such a machine out again, or forgetting its server, would both be wrong.
            raise InvalidArgument(
                f"machines {', '.join(sorted(lost))} run servers but are no longer in the "
                "machines file; enrol them again, then destroy their servers",
                code="hostagent.invalid_machines_file",
            )
        self._hardware: dict[str, tuple[int, int]] = {}  # last read from each BMC
        self._unreachable: set[str] = set()  # machines whose BMC failed the last list

    async def describe_host(self) -> HostDescription:
        await asyncio.gather(*(self._read_hardware(m) for m in self.machines))
        busy = {a.machine for a in self._assignments.servers.values()}
        total, free_ram_mb = HostResources(0, 0, 0), 0
        for machine in self.machines.values():
            cpus, ram_mb = self._hardware.get(machine.name, (0, 0))
            total = HostResources(
                total.vcpus + cpus, total.ram_mb + ram_mb, total.disk_gb + machine.disk_gb
            )
            free_ram_mb += 0 if machine.name in busy else ram_mb
        return HostDescription(
            driver=self.name,
            hypervisor_version=f"redfish (sushy {version('sushy')})",
            resources=total,
            free_ram_mb=free_ram_mb,
            children=tuple(
                ChildProvider(self._providers[m.name], m.name, {m.resource_class: 1})
                for m in sorted(self.machines.values(), key=lambda m: m.name)
            ),
        )

    async def spawn(self, spec: ServerSpec) -> DriverServer:
        assignment = self._assignments.servers.get(spec.server_id)
        if assignment is not None and assignment.ready:
            return await self.get(spec.server_id)
        source = self.images.get(spec.image_ref)
        if source is None:
            raise image_not_found(
                spec.image_ref, f"known: {', '.join(sorted(self.images)) or 'none'}"
            )
        if assignment is None:  # not a spawn that died half way: take a machine
            assignment = await self._take_machine(spec)
        bmc = self._bmcs[assignment.machine]
        log.info("server %s: machine %s boots %s", spec.server_id, bmc.machine.name, spec.image_ref)
        try:
            await self._call(bmc, "spawn", spec.server_id, bmc.boot_from, source)
            # A free machine found running is restarted, so it boots the image now.
            if await self._power(bmc, "spawn", spec.server_id) is PowerState.RUNNING:
                await self._reset(bmc, "spawn", spec.server_id, sushy.ResetType.FORCE_RESTART)
            else:
                await self._reset(bmc, "spawn", spec.server_id, sushy.ResetType.ON)
            await self._wait_for(bmc, PowerState.RUNNING, "spawn", spec.server_id)
        except StratusError:
            await self._give_back(spec.server_id, bmc, source)
            raise
        done = self._assignments.mark_ready(spec.server_id)
        return self._server(spec.server_id, done, PowerState.RUNNING)

    async def destroy(self, server_id: str) -> None:
        assignment = self._assignments.servers.get(server_id)
        if assignment is None:
            return
        bmc = self._bmcs[assignment.machine]
        # Like Nova's destroy, no grace: the server is going away. If the BMC cannot be
        # reached the assignment stays, so the machine is never handed out still running.
        if await self._power(bmc, "destroy", server_id) is not PowerState.SHUTDOWN:
            await self._reset(bmc, "destroy", server_id, sushy.ResetType.FORCE_OFF)
            await self._wait_for(bmc, PowerState.SHUTDOWN, "destroy", server_id)
        if _is_url(self.images.get(assignment.image_ref, "")):
            await self._call(bmc, "destroy", server_id, bmc.eject)
        self._assignments.forget(server_id)
        log.info("server %s destroyed: machine %s is free", server_id, bmc.machine.name)

    async def reboot(self, server_id: str, hard: bool) -> DriverServer:
        action = "hard reboot" if hard else "soft reboot"
        assignment, bmc = self._ready(server_id)
        state = await self._power(bmc, action, server_id)
        if not hard:
            if state is not PowerState.RUNNING:
                raise driver_failed(action, server_id, f"it is {state}; use a hard reboot")
            # A request to the operating system (ACPI); the machine stays powered.
            await self._reset(bmc, action, server_id, sushy.ResetType.GRACEFUL_RESTART)
            return self._server(server_id, assignment, await self._power(bmc, action, server_id))
        kind = sushy.ResetType.FORCE_RESTART if state is PowerState.RUNNING else sushy.ResetType.ON
        await self._reset(bmc, action, server_id, kind)
        await self._wait_for(bmc, PowerState.RUNNING, action, server_id)
        return self._server(server_id, assignment, PowerState.RUNNING)

    async def power_off(self, server_id: str) -> DriverServer:
        assignment, bmc = self._ready(server_id)
        if await self._power(bmc, "power off", server_id) is PowerState.RUNNING:
            # Graceful first, then forced once shutdown_timeout_s has passed, as Nova's stop.
            await self._reset(bmc, "power off", server_id, sushy.ResetType.GRACEFUL_SHUTDOWN)
            if not await self._reached(
                bmc, PowerState.SHUTDOWN, "power off", server_id, self.shutdown_timeout_s
            ):
                await self._reset(bmc, "power off", server_id, sushy.ResetType.FORCE_OFF)
                await self._wait_for(bmc, PowerState.SHUTDOWN, "power off", server_id)
        return self._server(server_id, assignment, PowerState.SHUTDOWN)

    async def power_on(self, server_id: str) -> DriverServer:
        assignment, bmc = self._ready(server_id)
        if await self._power(bmc, "power on", server_id) is not PowerState.RUNNING:
            await self._reset(bmc, "power on", server_id, sushy.ResetType.ON)
            await self._wait_for(bmc, PowerState.RUNNING, "power on", server_id)
        return self._server(server_id, assignment, PowerState.RUNNING)

    async def get(self, server_id: str) -> DriverServer:
        assignment, bmc = self._ready(server_id)
        return self._server(server_id, assignment, await self._power(bmc, "look-up", server_id))

    async def list_servers(self) -> list[DriverServer]:
        ready = [(s, a) for s, a in self._assignments.servers.items() if a.ready]
        states = await asyncio.gather(*(self._listed_power(s, a) for s, a in ready))
        return [self._server(s, a, state) for (s, a), state in zip(ready, states, strict=True)]

    async def close(self) -> None:
        for bmc in self._bmcs.values():
            bmc.close()

    # Choosing a machine.

    async def _take_machine(self, spec: ServerSpec) -> Assignment:
        if spec.vcpus < 1 or spec.ram_mb < 1 or spec.disk_gb < 0:
            raise InvalidArgument(
                f"a server needs at least 1 VCPU and 1 MB of RAM; got {spec.vcpus} VCPU, "
                f"{spec.ram_mb} MB, {spec.disk_gb} GB disk",
                code="hostagent.invalid_flavor",
            )
        wanted = self._allocated_machine(spec)
        names = [wanted] if wanted else sorted(self.machines)
        await asyncio.gather(*(self._read_hardware(n) for n in names if n not in self._hardware))
        fitting = [n for n in names if self._fits(spec, n)]
        if not fitting:
            sizes = "; ".join(f"{c} VCPU, {r} MB, {d} GB" for c, r, d in map(self._size, names))
            raise InvalidArgument(
                f"a server of {spec.vcpus} VCPU, {spec.ram_mb} MB RAM and {spec.disk_gb} GB "
                f"disk fits no machine here ({sizes or 'none enrolled'})",
                code="hostagent.flavor_too_large",
            )
        # No await from here on: checking that a machine is free and taking it is one step.
        for name in fitting:
            holder = self._assignments.server_on(name)
            if holder is None:
                assignment = Assignment.of(spec, name)
                self._assignments.assign(spec.server_id, assignment)
                return assignment
        if wanted:
            raise Conflict(
                f"machine {wanted}, which placement gave server {spec.server_id}, runs server "
                f"{self._assignments.server_on(wanted)}; placement and this host disagree",
                code="hostagent.machine_busy",
            )
        raise Conflict(
            f"every machine that fits server {spec.server_id} runs another server",
            code="hostagent.no_free_machine",
        )

    def _allocated_machine(self, spec: ServerSpec) -> str | None:
        """The machine placement's allocation names; None if the caller gave no allocation."""
        if not spec.allocations:
            return None
        named = [
            self._machine_by_provider[p] for p in spec.allocations if p in self._machine_by_provider
        ]
        if len(named) != 1:
            raise InvalidArgument(
                f"server {spec.server_id}'s allocations name {len(named)} machines of this host, "
                "not one: ask for one unit of a CUSTOM_BAREMETAL_* class",
                code="hostagent.no_machine_allocated",
            )
        return named[0]

    def _fits(self, spec: ServerSpec, name: str) -> bool:
        # What the BMC does not report (0) does not limit flavors.
        cpus, ram_mb, disk_gb = self._size(name)
        return (
            (not cpus or spec.vcpus <= cpus)
            and (not ram_mb or spec.ram_mb <= ram_mb)
            and spec.disk_gb <= disk_gb
        )

    def _size(self, name: str) -> tuple[int, int, int]:
        cpus, ram_mb = self._hardware.get(name, (0, 0))
        return cpus, ram_mb, self.machines[name].disk_gb

    async def _read_hardware(self, name: str) -> None:
        """Refresh what the BMC says the machine has; keep the last answer if it cannot say."""
        bmc = self._bmcs[name]
        try:
            self._hardware[name] = await self._call(bmc, "read hardware", None, bmc.hardware)
        except StratusError as exc:
            log.warning("machine %s: %s", name, exc.message)

    # Power, through the BMC.

    async def _power(self, bmc: Bmc, action: str, server_id: str) -> PowerState:
        return await self._call(bmc, action, server_id, bmc.power_state)

    async def _reset(self, bmc: Bmc, action: str, server_id: str, kind: sushy.ResetType) -> None:
        await self._call(bmc, action, server_id, bmc.reset, kind)

    async def _wait_for(self, bmc: Bmc, wanted: PowerState, action: str, server_id: str) -> None:
        """Poll until the machine is in the wanted state; a fault after power_timeout_s."""
        if not await self._reached(bmc, wanted, action, server_id, self.power_timeout_s):
            raise driver_failed(
                action,
                server_id,
                f"machine {bmc.machine.name} is not {wanted} after {self.power_timeout_s:g} s; "
                "see its BMC",
            )

    async def _reached(
        self, bmc: Bmc, wanted: PowerState, action: str, server_id: str, timeout_s: float
    ) -> bool:
        """Poll until the machine is in the wanted state; False if timeout_s passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        polls = 0
        while await self._power(bmc, action, server_id) is not wanted:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S[min(polls, len(POLL_S) - 1)])
            polls += 1
        return True

    async def _listed_power(self, server_id: str, assignment: Assignment) -> PowerState:
        """The power state for list_servers: NOSTATE (logged once) while the BMC cannot say."""
        bmc = self._bmcs[assignment.machine]
        try:
            state = await self._power(bmc, "power state sync", server_id)
        except StratusError as exc:
            if assignment.machine not in self._unreachable:
                log.warning("machine %s: %s", assignment.machine, exc.message)
            self._unreachable.add(assignment.machine)
            return PowerState.NOSTATE
        if assignment.machine in self._unreachable:
            self._unreachable.discard(assignment.machine)
            log.info("machine %s: its BMC answers again", assignment.machine)
        return state

    async def _give_back(self, server_id: str, bmc: Bmc, source: str) -> None:
        """After a failed spawn: leave the machine off and free, as best the BMC lets us."""
        try:
            await self._reset(bmc, "spawn clean-up", server_id, sushy.ResetType.FORCE_OFF)
            if _is_url(source):
                await self._call(bmc, "spawn clean-up", server_id, bmc.eject)
        except StratusError as exc:
            # Free all the same: the next spawn on it restarts it into its own image.
            log.warning("server %s: cleaning up machine %s: %s", server_id, bmc.machine.name, exc)
        self._assignments.forget(server_id)

    # Helpers.

    async def _call(
        self, bmc: Bmc, action: str, server_id: str | None, call: Callable[..., T], *args: object
    ) -> T:
        def run() -> T:
            with bmc.errors(action, server_id):
                return call(*args)

        return await asyncio.to_thread(run)

    def _ready(self, server_id: str) -> tuple[Assignment, Bmc]:
        assignment = self._assignments.servers.get(server_id)
        if assignment is None or not assignment.ready:
            raise server_not_found(server_id)
        return assignment, self._bmcs[assignment.machine]

    def _server(self, server_id: str, assignment: Assignment, state: PowerState) -> DriverServer:
        # The flavor's sizes, as asked for: the machine may have more.
        return DriverServer(
            server_id=server_id,
            name=assignment.name,
            power_state=state,
            vcpus=assignment.vcpus,
            ram_mb=assignment.ram_mb,
            disk_gb=assignment.disk_gb,
            image_ref=assignment.image_ref,
        )


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))
