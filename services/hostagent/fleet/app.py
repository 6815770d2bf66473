"""The simulator process: many fake hosts behind one gRPC endpoint.

It is a Stratus service like the others (services.common.server runs it:
health, interceptor, graceful SIGTERM), configured by the same STRATUS_*
settings as a real fake host agent; only the host names come from its
command line. On SIGTERM it revokes its hosts' leases (they vanish from
liveness at once) and leaves their providers in placement, as a stopped
agent does.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from stratus.hostagent.v1 import hostagent_pb2_grpc

from services.common.config import ServiceSection, Settings
from services.hostagent.app import SERVICE, liveness_value
from services.hostagent.fleet.control import control_handler
from services.hostagent.fleet.hosts import SimulatedHost, simulated_host
from services.hostagent.fleet.leases import HostLeases
from services.hostagent.fleet.servicer import FleetServicer
from services.hostagent.fleet.sweeps import (
    report_inventories,
    reported_count,
    sync_power_states,
)

log = logging.getLogger(__name__)


class FleetApp:
    name = "fleet"

    def __init__(self, names: list[str]) -> None:
        self.names = names
        # The running hosts; a crashed host leaves this map (and every loop over it).
        self.hosts: dict[str, SimulatedHost] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def section(self, settings: Settings) -> ServiceSection:
        return settings.hostagent

    async def start(self, settings: Settings) -> None:
        section = settings.hostagent
        if section.driver != "fake":
            raise SystemExit(f"fleet: simulated hosts use the fake driver, not {section.driver}")
        if section.provider_uuid:
            raise SystemExit("fleet: hostagent.provider_uuid would give every host one provider")
        # One host's per-provider report logs two lines; thousands would drown the log,
        # so the sweeps log a summary instead.
        logging.getLogger("services.hostagent.inventory").setLevel(logging.WARNING)
        self._section = section
        placement = grpc.aio.insecure_channel(settings.placement.target)
        api_gateway = grpc.aio.insecure_channel(settings.api_gateway.target)
        self._channels = [placement, api_gateway]
        self.leases = HostLeases(
            settings.etcd_endpoints, settings.etcd_prefix, section.liveness_ttl_s
        )
        started = time.monotonic()
        for index, name in enumerate(self.names):
            host = simulated_host(name, index, section, settings.state_dir, placement, api_gateway)
            self.hosts[name] = host
            self.leases.add(name, liveness_value(host.identity, host.driver, section))
        log.info(
            "%d simulated hosts ready in %.1f s (%s .. %s), answering on %s",
            len(self.names),
            time.monotonic() - started,
            self.names[0],
            self.names[-1],
            section.target,
        )

    def register(self, server: grpc.aio.Server) -> list[str]:
        hostagent_pb2_grpc.add_HostAgentServiceServicer_to_server(FleetServicer(self.hosts), server)
        server.add_generic_rpc_handlers((control_handler(self.status, self.crash),))
        return [SERVICE.full_name]

    async def serving(self) -> None:
        # As a real agent: announce the hosts only once their API answers.
        section = self._section
        self._tasks = [
            asyncio.create_task(
                report_inventories(self.hosts, section.inventory_interval_s, self._stop),
                name="inventory",
            ),
            asyncio.create_task(
                sync_power_states(self.hosts, section.power_sync_interval_s, self._stop),
                name="power-sync",
            ),
        ]
        self.leases.start()

    def status(self) -> dict:
        return {
            "hosts": len(self.hosts),
            "reported": reported_count(self.hosts),
            "registered": self.leases.registered,
            "keepalives_sent": self.leases.keepalives_sent,
        }

    def crash(self, names: list[str]) -> int:
        for name in names:
            self.hosts.pop(name, None)
        crashed = self.leases.crash(names)
        log.info(
            "crashed %d simulated host(s): their leases expire within %d s",
            crashed,
            self.leases.ttl,
        )
        return crashed

    async def stop(self) -> None:
        self._stop.set()
        # Give up the liveness keys first, so schedulers stop choosing these hosts now.
        await self.leases.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close()
