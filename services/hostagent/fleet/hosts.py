"""One simulated host: the real agent's parts (fake driver, servicer, inventory
report, power-state sync) for a host that shares its process with thousands of others.

Only what a real host owns is per host: its identity (provider uuid kept under
`<state>/hostagent/<host>/`, exactly where a real agent keeps it, so a restart
reuses it), its driver with servers in memory, its servicer and its reports.
Channels to placement and api_gateway are the process's, shared by every host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import HostAgentSection
from services.hostagent.app import service_metadata
from services.hostagent.drivers import fake_driver
from services.hostagent.drivers.fake import FakeDriver
from services.hostagent.identity import HostIdentity, host_identity
from services.hostagent.inventory import InventoryReporter
from services.hostagent.power_sync import PowerStateSync, api_gateway_reporter
from services.hostagent.servicer import HostAgentServicer


@dataclass
class SimulatedHost:
    identity: HostIdentity
    driver: FakeDriver
    servicer: HostAgentServicer
    inventory: InventoryReporter
    sync: PowerStateSync


def host_names(prefix: str, first: int, count: int) -> list[str]:
    """The fleet's host names: sim-00000, sim-00001, ... (zero-padded so they sort)."""
    return [f"{prefix}{i:05d}" for i in range(first, first + count)]


def simulated_host(
    name: str,
    index: int,
    section: HostAgentSection,
    state_dir: Path,
    placement: grpc.aio.Channel,
    api_gateway: grpc.aio.Channel,
) -> SimulatedHost:
    host_section = section.model_copy(update={"host": name})
    identity = host_identity(host_section, state_dir)
    # A seed per host, so hosts with an injected failure rate do not fail in step.
    fake = section.fake.model_copy(update={"seed": section.fake.seed + index})
    driver = fake_driver(fake, state_file=None)
    metadata = service_metadata(identity)
    sync = PowerStateSync(
        driver,
        api_gateway_reporter(api_gateway, name, metadata),
        section.power_sync_interval_s,
    )
    return SimulatedHost(
        identity=identity,
        driver=driver,
        servicer=HostAgentServicer(driver, identity, sync),
        inventory=InventoryReporter(placement, identity, driver, host_section, metadata),
        sync=sync,
    )
