"""The driver conformance suite: what every driver must do, the same way.

Each test runs once per driver. A new driver joins by adding a case to
`DRIVER_CASES` and passing this file. libvirt runs on its `test://` driver
(a real libvirt connection, no hypervisor); it skips where libvirt-python is
not installed, except in CI, where it must run. redfish runs three machines
behind sushy-tools' emulator on that same test driver, and skips likewise.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.common.errors import InvalidArgument, NotFound, StratusError
from services.hostagent.drivers.base import Capability, Driver, HostResources, PowerState
from services.hostagent.drivers.fake import FakeDriver
from tests.drivers.container_host import make_container_driver
from tests.drivers.libvirt_host import make_libvirt_driver
from tests.drivers.redfish_host import HOST as BARE_METAL
from tests.drivers.redfish_host import make_redfish_driver
from tests.drivers.specs import spec

HOST = HostResources(vcpus=32, ram_mb=65536, disk_gb=500)
IMAGE = "cirros"


@dataclass
class DriverCase:
    driver: Driver
    # What the driver must report for the host it was given.
    host: HostResources


async def _fake(tmp_path) -> DriverCase:
    return DriverCase(FakeDriver(HOST, images=frozenset({IMAGE})), HOST)


async def _libvirt(tmp_path) -> DriverCase:
    # make_libvirt_driver skips (fails in CI) where libvirt-python is missing.
    return DriverCase(make_libvirt_driver(tmp_path, host=HOST), HOST)


async def _fake_without_power(tmp_path) -> DriverCase:
    """A driver that cannot do everything, as bare metal without soft reboot."""
    without = frozenset({Capability.REBOOT_SOFT, Capability.POWER_OFF})
    return DriverCase(FakeDriver(HOST, images=frozenset({IMAGE}), without=without), HOST)


async def _container(tmp_path) -> DriverCase:
    # On the session's own podman service; skips (fails in CI) where podman cannot run.
    return DriverCase(make_container_driver(host=HOST), HOST)


async def _redfish(tmp_path) -> DriverCase:
    # Three machines behind sushy-tools' emulator; skips (fails in CI) without it or libvirt.
    # The host is what they have together; a server takes the first free machine that fits.
    return DriverCase(make_redfish_driver(tmp_path), BARE_METAL)


DRIVER_CASES = {
    "fake": _fake,
    "fake-limited": _fake_without_power,
    "libvirt": _libvirt,
    "container": _container,
    "redfish": _redfish,
}


@pytest.fixture(params=sorted(DRIVER_CASES))
async def case(request, tmp_path) -> AsyncIterator[DriverCase]:
    made = await DRIVER_CASES[request.param](tmp_path)
    yield made
    for server in await made.driver.list_servers():
        await made.driver.destroy(server.server_id)
    await made.driver.close()


async def ids(driver: Driver) -> set[str]:
    return {s.server_id for s in await driver.list_servers()}


async def test_spawned_server_runs_and_is_listed(case):
    wanted = spec(vcpus=2, ram_mb=2048)
    server = await case.driver.spawn(wanted)
    assert server.power_state is PowerState.RUNNING
    assert (server.server_id, server.name, server.vcpus, server.ram_mb, server.image_ref) == (
        wanted.server_id,
        "web-1",
        2,
        2048,
        IMAGE,
    )
    assert await ids(case.driver) == {wanted.server_id}
    assert (await case.driver.get(wanted.server_id)).power_state is PowerState.RUNNING


async def test_spawn_is_idempotent(case):
    wanted = spec()
    first = await case.driver.spawn(wanted)
    again = await case.driver.spawn(wanted)
    assert again.server_id == first.server_id
    assert await ids(case.driver) == {wanted.server_id}


def needs(case: DriverCase, *capabilities: Capability) -> None:
    missing = [c for c in capabilities if c not in case.driver.capabilities]
    if missing:
        pytest.skip(f"{case.driver.name} does not offer {', '.join(missing)}")


async def test_power_off_and_on(case):
    needs(case, Capability.POWER_OFF, Capability.POWER_ON)
    server = await case.driver.spawn(spec())
    off = await case.driver.power_off(server.server_id)
    assert off.power_state is PowerState.SHUTDOWN
    assert (await case.driver.get(server.server_id)).power_state is PowerState.SHUTDOWN
    # Already off: still fine, still off.
    assert (await case.driver.power_off(server.server_id)).power_state is PowerState.SHUTDOWN
    on = await case.driver.power_on(server.server_id)
    assert on.power_state is PowerState.RUNNING
    assert (await case.driver.power_on(server.server_id)).power_state is PowerState.RUNNING


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
async def test_reboot_leaves_the_server_running(case, hard):
    needs(case, Capability.REBOOT_HARD if hard else Capability.REBOOT_SOFT)
    server = await case.driver.spawn(spec())
    rebooted = await case.driver.reboot(server.server_id, hard=hard)
    assert rebooted.power_state is PowerState.RUNNING


async def test_hard_reboot_starts_a_stopped_server_and_soft_reboot_refuses(case):
    needs(case, Capability.POWER_OFF, Capability.REBOOT_HARD, Capability.REBOOT_SOFT)
    server = await case.driver.spawn(spec())
    await case.driver.power_off(server.server_id)
    with pytest.raises(StratusError) as refused:
        await case.driver.reboot(server.server_id, hard=False)
    assert refused.value.code == "hostagent.driver_error"
    assert "hard reboot" in refused.value.message
    assert (await case.driver.reboot(server.server_id, hard=True)).power_state is (
        PowerState.RUNNING
    )


async def test_destroyed_server_is_gone_and_destroy_is_idempotent(case):
    server = await case.driver.spawn(spec())
    await case.driver.destroy(server.server_id)
    assert await ids(case.driver) == set()
    with pytest.raises(NotFound) as missing:
        await case.driver.get(server.server_id)
    assert missing.value.code == "hostagent.server_not_found"
    await case.driver.destroy(server.server_id)
    await case.driver.destroy(str(uuid.uuid4()))


@pytest.mark.parametrize("action", ["power_off", "power_on", "reboot"])
async def test_calls_about_an_unknown_server_say_so(case, action):
    needs(case, Capability.POWER_OFF if action == "power_off" else Capability.POWER_ON)
    call = getattr(case.driver, action)
    args = (True,) if action == "reboot" else ()
    with pytest.raises(NotFound) as missing:
        await call(str(uuid.uuid4()), *args)
    assert missing.value.code == "hostagent.server_not_found"


async def test_unknown_image_is_a_clear_error_and_leaves_nothing(case):
    with pytest.raises(InvalidArgument) as refused:
        await case.driver.spawn(spec(image_ref="no-such-image"))
    assert refused.value.code == "hostagent.image_not_found"
    assert "no-such-image" in refused.value.message
    assert await ids(case.driver) == set()


@pytest.mark.parametrize(
    "sizes",
    [{"vcpus": 33}, {"ram_mb": 65537}, {"disk_gb": 501}, {"vcpus": 0}],
    ids=["vcpus", "ram", "disk", "zero-vcpus"],
)
async def test_impossible_flavor_is_a_clear_error_and_leaves_nothing(case, sizes):
    with pytest.raises(InvalidArgument) as refused:
        await case.driver.spawn(spec(**sizes))
    assert refused.value.code in {"hostagent.flavor_too_large", "hostagent.invalid_flavor"}
    assert await ids(case.driver) == set()


async def test_reported_capacity_matches_the_host(case):
    host = await case.driver.describe_host()
    assert host.resources == case.host
    assert host.driver == case.driver.name
    assert host.hypervisor_version
    before = host.free_ram_mb
    await case.driver.spawn(spec(ram_mb=4096))
    assert (await case.driver.describe_host()).free_ram_mb == before - 4096


CALLS = {
    Capability.POWER_OFF: lambda d, i: d.power_off(i),
    Capability.POWER_ON: lambda d, i: d.power_on(i),
    Capability.REBOOT_SOFT: lambda d, i: d.reboot(i, hard=False),
    Capability.REBOOT_HARD: lambda d, i: d.reboot(i, hard=True),
}


async def test_what_a_driver_cannot_do_is_declared_and_refused_clearly(case):
    server = await case.driver.spawn(spec())
    for capability in sorted(set(Capability) - case.driver.capabilities):
        with pytest.raises(StratusError) as refused:
            await CALLS[capability](case.driver, server.server_id)
        assert refused.value.code == "hostagent.unsupported_operation"
    assert (await case.driver.get(server.server_id)).power_state is PowerState.RUNNING
