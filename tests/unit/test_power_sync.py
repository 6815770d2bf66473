"""The agent's side of power sync: changes made outside Stratus are noticed,
reported once, and kept while api_gateway cannot take them.

Reports go to a list here (or to an address where nothing listens); what
api_gateway does with one is tested in tests/e2e/test_servers_hosts.py.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from deploy.local.mesh import free_port
from services.common.context import ROLES_KEY, SERVICE_ROLE
from services.hostagent.drivers.base import HostResources, PowerState, ServerSpec
from services.hostagent.drivers.fake import FakeDriver
from services.hostagent.power_sync import PowerStateSync, api_gateway_reporter


def fake_host() -> FakeDriver:
    return FakeDriver(HostResources(8, 8192, 100), frozenset({"cirros"}))


async def spawn(driver: FakeDriver) -> str:
    server_id = str(uuid.uuid4())
    await driver.spawn(ServerSpec(server_id, "s", 1, 512, 1, "cirros"))
    return server_id


async def test_changes_outside_stratus_are_reported_once():
    driver, reports = fake_host(), []

    async def record(changes):
        reports.append(dict(changes))

    sync = PowerStateSync(driver, record, interval_s=60)
    server_id = await spawn(driver)
    sync.observed(server_id, PowerState.RUNNING)  # the spawn call's caller saw RUNNING
    await sync.sync_once()
    assert reports == []

    driver.set_power_outside_stratus(server_id, PowerState.SHUTDOWN)
    await sync.sync_once()
    await sync.sync_once()
    assert reports == [{server_id: PowerState.SHUTDOWN}]

    await driver.destroy(server_id)  # gone behind Stratus's back
    await sync.sync_once()
    assert reports[-1] == {server_id: PowerState.NOSTATE}


async def test_unaccepted_reports_stay_pending_and_are_logged_once(caplog):
    driver = fake_host()
    server_id = await spawn(driver)
    metadata = ((ROLES_KEY, SERVICE_ROLE),)
    # api_gateway down: nothing listens there.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        sync = PowerStateSync(driver, api_gateway_reporter(channel, "fake-x", metadata), 60)
        with caplog.at_level(logging.DEBUG, logger="services.hostagent.power_sync"):
            for _ in range(3):
                await sync.sync_once()
    assert sync.pending == {server_id: PowerState.RUNNING}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "UNAVAILABLE" in warnings[0].getMessage()
