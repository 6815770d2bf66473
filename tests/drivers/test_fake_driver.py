"""What only the fake driver does: injected slowness and failures, for tests and the simulator."""

from __future__ import annotations

import time
import uuid

import pytest

from services.common.errors import Internal
from services.hostagent.drivers.base import HostResources, ServerSpec
from services.hostagent.drivers.fake import FakeDriver

HOST = HostResources(vcpus=8, ram_mb=8192, disk_gb=100)


def spec() -> ServerSpec:
    return ServerSpec(str(uuid.uuid4()), "s", 1, 512, 1, "cirros")


async def test_a_failing_host_fails_spawns_cleanly():
    driver = FakeDriver(HOST, frozenset({"cirros"}), failure_rate=1.0)
    with pytest.raises(Internal) as failed:
        await driver.spawn(spec())
    assert failed.value.code == "hostagent.driver_error"
    assert "injected failure" in failed.value.message
    assert await driver.list_servers() == []


async def test_failures_follow_the_seed():
    async def outcomes(seed: int) -> list[bool]:
        driver = FakeDriver(HOST, frozenset({"cirros"}), failure_rate=0.5, seed=seed)
        results = []
        for _ in range(20):
            try:
                await driver.spawn(spec())
                results.append(True)
            except Internal:
                results.append(False)
        return results

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert 0 < sum(first) < 20


async def test_a_slow_host_is_slow():
    driver = FakeDriver(HOST, frozenset({"cirros"}), delay_s=0.2)
    started = time.monotonic()
    await driver.spawn(spec())
    assert time.monotonic() - started >= 0.2
