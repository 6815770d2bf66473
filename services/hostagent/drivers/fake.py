"""The fake driver: servers in memory, host size from configuration.

It is to Stratus what httpx's MockTransport is to httpx: every other part
(and the fleet simulator) can run real host agents without a hypervisor.
Deterministic by default; an injected delay and failure rate (seeded) let
tests exercise slow and failing hosts. Injected failures hit spawn, reboot
and the power calls, never destroy, and a failed spawn leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import asdict, replace
from pathlib import Path

from services.hostagent.drivers.base import (
    ALL_CAPABILITIES,
    Capability,
    DriverServer,
    HostDescription,
    HostResources,
    PowerState,
    ServerSpec,
    check_fits,
    driver_failed,
    image_not_found,
    server_not_found,
    unsupported,
)

VERSION = "fake 1"


class FakeDriver:
    name = "fake"

    def __init__(
        self,
        resources: HostResources,
        images: frozenset[str],
        delay_s: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        without: frozenset[Capability] = frozenset(),
        state_file: Path | None = None,
    ) -> None:
        self.capabilities = ALL_CAPABILITIES - without
        # Where the fake host keeps its servers across agent restarts, as a real
        # hypervisor would; None keeps them in memory only (tests, the simulator).
        self._state_file = state_file
        self.resources = resources
        self.images = images
        self.delay_s = delay_s
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._servers: dict[str, DriverServer] = {}
        if state_file is not None and state_file.exists():
            for item in json.loads(state_file.read_text()):
                server = DriverServer(**item | {"power_state": PowerState(item["power_state"])})
                self._servers[server.server_id] = server

    def _save(self) -> None:
        if self._state_file is None:
            return
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(s) for s in self._servers.values()]))
        os.replace(tmp, self._state_file)

    async def describe_host(self) -> HostDescription:
        running = [s for s in self._servers.values() if s.power_state is PowerState.RUNNING]
        return HostDescription(
            driver=self.name,
            hypervisor_version=VERSION,
            resources=self.resources,
            free_ram_mb=self.resources.ram_mb - sum(s.ram_mb for s in running),
            traits=frozenset({"COMPUTE_NET_ATTACH_INTERFACE"}),
        )

    async def spawn(self, spec: ServerSpec) -> DriverServer:
        if spec.server_id in self._servers:
            return self._servers[spec.server_id]
        if spec.image_ref not in self.images:
            raise image_not_found(spec.image_ref, f"known: {', '.join(sorted(self.images))}")
        check_fits(spec, self.resources)
        await self._work("spawn", spec.server_id)
        # The await above may have let a concurrent spawn of the same id finish.
        server = self._servers.setdefault(
            spec.server_id,
            DriverServer(
                server_id=spec.server_id,
                name=spec.name,
                power_state=PowerState.RUNNING,
                vcpus=spec.vcpus,
                ram_mb=spec.ram_mb,
                disk_gb=spec.disk_gb,
                image_ref=spec.image_ref,
            ),
        )
        self._save()
        return server

    async def destroy(self, server_id: str) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self._servers.pop(server_id, None)
        self._save()

    async def reboot(self, server_id: str, hard: bool) -> DriverServer:
        self._require(Capability.REBOOT_HARD if hard else Capability.REBOOT_SOFT)
        server = await self.get(server_id)
        if not hard and server.power_state is not PowerState.RUNNING:
            raise driver_failed(
                "soft reboot", server_id, f"it is {server.power_state}; use a hard reboot"
            )
        await self._work("reboot", server_id)
        return self._set_power(server_id, PowerState.RUNNING)

    async def power_off(self, server_id: str) -> DriverServer:
        self._require(Capability.POWER_OFF)
        await self.get(server_id)
        await self._work("power off", server_id)
        return self._set_power(server_id, PowerState.SHUTDOWN)

    async def power_on(self, server_id: str) -> DriverServer:
        self._require(Capability.POWER_ON)
        await self.get(server_id)
        await self._work("power on", server_id)
        return self._set_power(server_id, PowerState.RUNNING)

    async def get(self, server_id: str) -> DriverServer:
        try:
            return self._servers[server_id]
        except KeyError:
            raise server_not_found(server_id) from None

    async def list_servers(self) -> list[DriverServer]:
        return list(self._servers.values())

    async def close(self) -> None:
        pass

    def set_power_outside_stratus(self, server_id: str, state: PowerState) -> None:
        """What a user shutting a guest down from inside would do; for tests."""
        self._set_power(server_id, state)

    def _set_power(self, server_id: str, state: PowerState) -> DriverServer:
        server = self._servers.get(server_id)
        if server is None:  # destroyed meanwhile
            raise server_not_found(server_id)
        self._servers[server_id] = server = replace(server, power_state=state)
        self._save()
        return server

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise unsupported(self.name, capability)

    async def _work(self, action: str, server_id: str) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise driver_failed(action, server_id, "injected failure (fake driver failure_rate)")
