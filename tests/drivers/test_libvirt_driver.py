"""What only the libvirt driver does: real libvirt calls against its test:/// driver.

The behaviour every driver shares is in test_conformance.py. Tests on
test:///default share one in-process host with everything else in this process,
so they assert only about their own servers and the built-in `test` domain.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import pytest

from services.common.errors import Internal, InvalidArgument, NotFound, Unavailable
from services.hostagent.drivers.base import HostResources, PowerState
from tests.drivers.libvirt_host import make_libvirt_driver, require_libvirt
from tests.drivers.specs import spec

libvirt = require_libvirt()

DEFAULT_URI = "test:///default"
# The domain test:///default is born with; it is not Stratus's.
BUILTIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
BIG_HOST = HostResources(vcpus=32, ram_mb=65536, disk_gb=500)


@pytest.fixture
async def driver(tmp_path) -> AsyncIterator:
    made = make_libvirt_driver(tmp_path, host=BIG_HOST)
    yield made
    await made.close()


@pytest.fixture
async def shared_driver(tmp_path) -> AsyncIterator:
    """A driver on test:///default; destroys what it made, leaves the rest alone."""
    made = make_libvirt_driver(tmp_path, uri=DEFAULT_URI)
    before = {s.server_id for s in await made.list_servers()}
    yield made
    for server in await made.list_servers():
        if server.server_id not in before:
            await made.destroy(server.server_id)
    await made.close()


@pytest.fixture
def other_connection():
    """A second client of test:///default: someone acting outside Stratus."""
    conn = libvirt.open(DEFAULT_URI)
    yield conn
    conn.close()


async def test_capacity_comes_from_the_host_description(driver):
    host = await driver.describe_host()
    assert host.driver == "libvirt"
    assert host.resources == BIG_HOST
    assert host.free_ram_mb == 65536
    assert re.fullmatch(r"libvirt \d+\.\d+\.\d+ \(test\)", host.hypervisor_version)
    assert {"COMPUTE_NET_ATTACH_INTERFACE", "HW_ARCH_X86_64"} <= host.traits


async def test_free_memory_counts_running_servers_only(driver):
    small = await driver.spawn(spec(ram_mb=1024))
    await driver.spawn(spec(ram_mb=4096))
    assert (await driver.describe_host()).free_ram_mb == 65536 - 5120
    await driver.power_off(small.server_id)
    assert (await driver.describe_host()).free_ram_mb == 65536 - 4096


async def test_free_memory_counts_domains_that_are_not_ours(shared_driver, other_connection):
    # test:///default has 3 GiB and its built-in domain uses 2 GiB of it.
    builtin = other_connection.lookupByUUIDString(BUILTIN_UUID)
    ours = sum(s.ram_mb for s in await shared_driver.list_servers() if s.power_state == "RUNNING")
    expected = 3072 - builtin.info()[2] // 1024 - ours
    assert (await shared_driver.describe_host()).free_ram_mb == max(0, expected)


async def test_the_builtin_domain_is_never_listed_or_touched(shared_driver, other_connection):
    await shared_driver.spawn(spec())
    assert BUILTIN_UUID not in {s.server_id for s in await shared_driver.list_servers()}
    with pytest.raises(NotFound):
        await shared_driver.get(BUILTIN_UUID)
    with pytest.raises(NotFound):
        await shared_driver.power_off(BUILTIN_UUID)
    await shared_driver.destroy(BUILTIN_UUID)  # a no-op: not ours
    # Spawning with its uuid must fail, not adopt it, and leave no half-made domain.
    with pytest.raises(Internal) as refused:
        await shared_driver.spawn(spec(server_id=BUILTIN_UUID))
    assert refused.value.code == "hostagent.driver_error"
    builtin = other_connection.lookupByUUIDString(BUILTIN_UUID)
    assert (builtin.name(), builtin.isActive(), builtin.isPersistent()) == ("test", 1, 1)


async def test_server_stopped_outside_stratus_shows_shutdown(shared_driver, other_connection):
    server = await shared_driver.spawn(spec())
    other_connection.lookupByUUIDString(server.server_id).destroy()
    assert (await shared_driver.get(server.server_id)).power_state is PowerState.SHUTDOWN
    listed = {s.server_id: s for s in await shared_driver.list_servers()}
    assert listed[server.server_id].power_state is PowerState.SHUTDOWN
    assert (await shared_driver.power_on(server.server_id)).power_state is PowerState.RUNNING


async def test_paused_outside_stratus_shows_paused_and_powers_on(shared_driver, other_connection):
    server = await shared_driver.spawn(spec())
    other_connection.lookupByUUIDString(server.server_id).suspend()
    assert (await shared_driver.get(server.server_id)).power_state is PowerState.PAUSED
    assert (await shared_driver.power_on(server.server_id)).power_state is PowerState.RUNNING


async def test_domain_carries_the_server_in_our_metadata(shared_driver, other_connection):
    server = await shared_driver.spawn(spec(name="a <b> & 'c'", vcpus=2, ram_mb=768, disk_gb=7))
    domain = other_connection.lookupByUUIDString(server.server_id)
    assert domain.name() == f"stratus-{server.server_id}"
    assert "<transient" in domain.XMLDesc()
    got = await shared_driver.get(server.server_id)
    assert (got.name, got.vcpus, got.ram_mb, got.disk_gb, got.image_ref) == (
        "a <b> & 'c'",
        2,
        768,
        7,
        "cirros",
    )


@pytest.mark.parametrize("image_ref", ["../secret", "/etc/passwd", "..", "images/cirros", ""])
async def test_image_refs_that_are_paths_are_refused(driver, tmp_path, image_ref):
    (tmp_path / "secret").write_bytes(b"not an image")
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(spec(image_ref=image_ref))
    assert refused.value.code == "hostagent.invalid_image_ref"
    assert await driver.list_servers() == []


async def test_unknown_image_names_the_known_ones(driver):
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(spec(image_ref="no-such-image"))
    assert refused.value.code == "hostagent.image_not_found"
    assert "cirros" in refused.value.message


async def test_server_ids_must_be_uuids(driver):
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(spec(server_id="web-1"))
    assert refused.value.code == "hostagent.invalid_server_id"
    with pytest.raises(NotFound):
        await driver.get("web-1")
    await driver.destroy("web-1")


async def test_concurrent_spawns_of_one_id_make_one_server(driver):
    wanted = spec()
    first, second = await asyncio.gather(driver.spawn(wanted), driver.spawn(wanted))
    assert first == second
    assert [s.server_id for s in await driver.list_servers()] == [wanted.server_id]


async def test_connection_opens_lazily_and_reopens_after_close(tmp_path):
    made = make_libvirt_driver(tmp_path, uri=DEFAULT_URI)
    assert made._conn is None  # constructing does no I/O
    await made.describe_host()
    await made.close()
    assert (await made.describe_host()).resources.vcpus == 16
    await made.close()


async def test_unreachable_libvirt_is_unavailable(tmp_path):
    made = make_libvirt_driver(tmp_path, uri="test:///no/such/node.xml")
    with pytest.raises(Unavailable) as failed:
        await made.describe_host()
    assert failed.value.code == "hostagent.hypervisor_unavailable"


def test_missing_libvirt_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt now raises
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make venv"):
        require_libvirt()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="install libvirt-dev and pkg-config"):
        require_libvirt()
