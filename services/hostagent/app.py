"""hostagent process: one per compute host.

It owns the driver that creates servers, reports the host to placement and
keeps the host's liveness key in etcd. Placement or etcd being down at start
does not stop it: both loops retry in the background and catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from stratus.hostagent.v1 import hostagent_pb2, hostagent_pb2_grpc

from services.common.config import HostAgentSection, ServiceSection, Settings
from services.common.context import ROLES_KEY, SERVICE_ROLE, USER_KEY
from services.common.errors import StratusError
from services.common.liveness import HostLease
from services.hostagent.drivers import make_driver
from services.hostagent.drivers.base import Driver
from services.hostagent.identity import HostIdentity, host_identity
from services.hostagent.inventory import InventoryReporter
from services.hostagent.power_sync import PowerStateSync, api_gateway_reporter
from services.hostagent.servicer import HostAgentServicer

log = logging.getLogger(__name__)
SERVICE = hostagent_pb2.DESCRIPTOR.services_by_name["HostAgentService"]


def service_metadata(identity: HostIdentity) -> tuple[tuple[str, str], ...]:
    """How the agent names itself when it calls placement and api_gateway."""
    return ((ROLES_KEY, SERVICE_ROLE), (USER_KEY, f"hostagent:{identity.host}"))


def liveness_value(identity: HostIdentity, driver: Driver, section: HostAgentSection) -> dict:
    """What the host's liveness key says: where its agent answers, and what it is."""
    return {
        "host": identity.host,
        "address": section.target,
        "provider_uuid": identity.provider_uuid,
        "driver": driver.name,
        "availability_zone": section.availability_zone,
        "capabilities": sorted(driver.capabilities),
    }


class HostAgentApp:
    name = "hostagent"

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.identity: HostIdentity | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def section(self, settings: Settings) -> ServiceSection:
        return settings.hostagent

    async def start(self, settings: Settings) -> None:
        section = settings.hostagent
        self.identity = identity = host_identity(section, settings.state_dir)
        try:
            self.driver = make_driver(section, settings.state_dir / "hostagent" / identity.host)
        except ImportError as exc:
            raise SystemExit(
                f"hostagent: the {section.driver} driver cannot load ({exc}); for libvirt "
                "install Debian's libvirt-dev and pkg-config, then `make venv`; for container "
                "install the `container` extra (`pip install -e '.[container]'`); for redfish "
                "the `redfish` extra"
            ) from exc
        except StratusError as exc:  # a configuration the driver refuses, such as its machines
            raise SystemExit(f"hostagent: the {section.driver} driver: {exc.message}") from None
        metadata = service_metadata(identity)
        placement = grpc.aio.insecure_channel(settings.placement.target)
        api_gateway = grpc.aio.insecure_channel(settings.api_gateway.target)
        self._channels = [placement, api_gateway]
        self.inventory = InventoryReporter(placement, identity, self.driver, section, metadata)
        self.sync = PowerStateSync(
            self.driver,
            api_gateway_reporter(api_gateway, identity.host, metadata),
            section.power_sync_interval_s,
        )
        self.lease = HostLease(
            endpoints=settings.etcd_endpoints,
            prefix=settings.etcd_prefix,
            host=identity.host,
            value=liveness_value(identity, self.driver, section),
            ttl=section.liveness_ttl_s,
        )

    def register(self, server: grpc.aio.Server) -> list[str]:
        assert self.driver is not None and self.identity is not None, "start() first"
        hostagent_pb2_grpc.add_HostAgentServiceServicer_to_server(
            HostAgentServicer(self.driver, self.identity, self.sync), server
        )
        return [SERVICE.full_name]

    async def serving(self) -> None:
        # Announce the host only once its API answers.
        self._tasks = [
            asyncio.create_task(self.inventory.run(self._stop), name="inventory"),
            asyncio.create_task(self.sync.run(self._stop), name="power-sync"),
        ]
        await self.lease.start()

    async def stop(self) -> None:
        self._stop.set()
        # Give up the liveness key first, so schedulers stop choosing this host now.
        with contextlib.suppress(Exception):
            await self.lease.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close()
        if self.driver is not None:
            await self.driver.close()
