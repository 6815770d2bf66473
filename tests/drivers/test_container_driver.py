"""What only the container driver does: real podman containers, on the session's service.

The behaviour every driver shares is in test_conformance.py. Here: the flavor
lands in the container's cgroup, containers have no network, other people's
containers are invisible and untouched, podman (not the driver) holds state,
and the stop semantics behind soft and hard.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.errors import Internal, InvalidArgument, NotFound, Unavailable
from services.hostagent.drivers.base import HostResources, PowerState
from tests.drivers.container_host import (
    TEST_IMAGE,
    make_container_driver,
    podman_service,
    require_podman,
)
from tests.drivers.specs import spec

require_podman()

from podman import PodmanClient  # noqa: E402  (only once podman is known to be there)

from services.hostagent.drivers.container_driver import (  # noqa: E402
    ID_LABEL,
    ContainerDriver,
)

MIB = 1024**2
# An image whose PID 1 ignores SIGTERM, as a guest without ACPI support does.
DEAF_IMAGE = "localhost/stratus-deaf:latest"
CGROUP = Path("/sys/fs/cgroup")


def read(path: Path | str) -> str:
    """A small kernel file (/proc, /sys); instant, so fine to read from a test coroutine."""
    return Path(path).read_text().strip()


@pytest.fixture
async def driver() -> AsyncIterator[ContainerDriver]:
    made = make_container_driver()
    yield made
    for server in await made.list_servers():
        await made.destroy(server.server_id)
    await made.close()


@pytest.fixture
def podman() -> Iterator[PodmanClient]:
    """A client of the same service, acting outside Stratus."""
    with PodmanClient(base_url=podman_service().socket_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def deaf_image() -> str:
    service = podman_service()
    build = service.dir / "deaf"
    build.mkdir(exist_ok=True)
    (build / "Containerfile").write_text(f'FROM {TEST_IMAGE}\nCMD ["/bin/sleep", "2147483647"]\n')
    service.podman("build", "--quiet", "--pull=never", "-t", DEAF_IMAGE, str(build))
    return DEAF_IMAGE


async def test_capacity_comes_from_podman_info():
    sized_by_host = make_container_driver(host=HostResources(vcpus=0, ram_mb=0, disk_gb=0))
    try:
        host = await sized_by_host.describe_host()
    finally:
        await sized_by_host.close()
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo"))[1])
    storage = shutil.disk_usage(podman_service().dir)
    assert host.driver == "container"
    assert host.resources == HostResources(
        vcpus=os.cpu_count(), ram_mb=mem_kib // 1024, disk_gb=storage.total // 1024**3
    )
    assert re.fullmatch(r"podman \d+\.\d+\.\d+ \(runc version .+\)", host.hypervisor_version)
    if os.uname().machine == "x86_64":
        assert "HW_ARCH_X86_64" in host.traits


async def test_flavor_becomes_cgroup_limits(driver, podman):
    server = await driver.spawn(spec(vcpus=2, ram_mb=256))
    assert (server.vcpus, server.ram_mb) == (2, 256)
    container = podman.containers.get(f"stratus-{server.server_id}")
    limits = container.attrs["HostConfig"]
    assert limits["Memory"] == limits["MemorySwap"] == 256 * MIB
    assert (limits["CpuQuota"], limits["CpuPeriod"]) == (200_000, 100_000)
    # What the kernel enforces, not only what podman recorded.
    path = container.attrs["State"]["CgroupPath"].lstrip("/")
    if (CGROUP / "memory").is_dir():  # cgroup v1, as on our CI
        assert read(CGROUP / "memory" / path / "memory.limit_in_bytes") == str(256 * MIB)
        assert read(CGROUP / "cpu" / path / "cpu.cfs_quota_us") == "200000"
        assert read(CGROUP / "cpu" / path / "cpu.cfs_period_us") == "100000"
    else:
        assert read(CGROUP / path / "memory.max") == str(256 * MIB)
        assert read(CGROUP / path / "cpu.max") == "200000 100000"


async def test_containers_have_no_network(driver, podman):
    server = await driver.spawn(spec())
    container = podman.containers.get(f"stratus-{server.server_id}")
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    # Seen from the host, without exec: the container's network namespace has only lo.
    net_dev = read(f"/proc/{container.attrs['State']['Pid']}/net/dev")
    interfaces = {line.split(":")[0].strip() for line in net_dev.splitlines()[2:]}
    assert interfaces == {"lo"}


async def test_other_peoples_containers_are_never_listed_or_touched(driver, podman):
    server_id = str(uuid.uuid4())
    # One with our name but not our label, one with our label but not our name.
    lookalike = podman.containers.create(
        TEST_IMAGE, name=f"stratus-{server_id}", network_mode="none"
    )
    mislabelled = podman.containers.create(
        TEST_IMAGE, name=f"theirs-{server_id}", labels={ID_LABEL: server_id}, network_mode="none"
    )
    try:
        lookalike.start()
        ours = await driver.spawn(spec())
        assert {s.server_id for s in await driver.list_servers()} == {ours.server_id}
        with pytest.raises(NotFound):
            await driver.get(server_id)
        with pytest.raises(NotFound):
            await driver.power_off(server_id)
        await driver.destroy(server_id)  # a no-op: the server does not exist
        with pytest.raises(Internal) as refused:
            await driver.spawn(spec(server_id=server_id))
        assert "Stratus did not make" in refused.value.message
        lookalike.reload()
        mislabelled.reload()
        assert (lookalike.status, mislabelled.status) == ("running", "created")
    finally:
        lookalike.remove(force=True)
        mislabelled.remove(force=True)


async def test_servers_outlive_the_driver(podman):
    first = make_container_driver()
    try:
        running = await first.spawn(spec(name="kept", vcpus=2, ram_mb=128))
        stopped = await first.spawn(spec(name="off"))
        await first.power_off(stopped.server_id)
    finally:
        await first.close()
    second = make_container_driver()
    try:
        servers = {s.server_id: s for s in await second.list_servers()}
        assert servers == {
            running.server_id: running,
            stopped.server_id: await second.get(stopped.server_id),
        }
        assert servers[stopped.server_id].power_state is PowerState.SHUTDOWN
    finally:
        for server_id in (running.server_id, stopped.server_id):
            await second.destroy(server_id)
        await second.close()


async def test_free_memory_counts_running_containers_only(driver):
    total = (await driver.describe_host()).resources.ram_mb
    small = await driver.spawn(spec(ram_mb=1024))
    await driver.spawn(spec(ram_mb=4096))
    assert (await driver.describe_host()).free_ram_mb == total - 5120
    await driver.power_off(small.server_id)
    assert (await driver.describe_host()).free_ram_mb == total - 4096


async def test_a_pause_made_outside_stratus_shows_and_power_calls_handle_it(driver, podman):
    server = await driver.spawn(spec())
    podman.containers.get(f"stratus-{server.server_id}").pause()
    assert (await driver.get(server.server_id)).power_state is PowerState.PAUSED
    assert (await driver.power_on(server.server_id)).power_state is PowerState.RUNNING
    podman.containers.get(f"stratus-{server.server_id}").pause()
    # podman itself refuses to stop or restart a paused container.
    assert (await driver.power_off(server.server_id)).power_state is PowerState.SHUTDOWN
    await driver.power_on(server.server_id)
    podman.containers.get(f"stratus-{server.server_id}").pause()
    assert (await driver.reboot(server.server_id, hard=True)).power_state is PowerState.RUNNING
    podman.containers.get(f"stratus-{server.server_id}").pause()
    await driver.destroy(server.server_id)
    assert await driver.list_servers() == []


async def test_soft_stops_wait_for_sigterm_and_hard_ones_do_not(deaf_image, podman):
    patient = make_container_driver(stop_timeout_s=1)
    server = spec(image_ref=deaf_image)
    try:
        await patient.spawn(server)
        started = time.monotonic()
        await patient.reboot(server.server_id, hard=True)
        assert time.monotonic() - started < 1  # SIGKILL at once
        started = time.monotonic()
        assert (await patient.reboot(server.server_id, hard=False)).power_state is (
            PowerState.RUNNING
        )
        assert time.monotonic() - started >= 1  # SIGTERM ignored, SIGKILL after the timeout
        started = time.monotonic()
        assert (await patient.power_off(server.server_id)).power_state is PowerState.SHUTDOWN
        assert time.monotonic() - started >= 1
        state = podman.containers.get(f"stratus-{server.server_id}").attrs["State"]
        assert state["ExitCode"] == 137  # killed
        await patient.power_on(server.server_id)
        started = time.monotonic()
        await patient.destroy(server.server_id)
        assert time.monotonic() - started < 1
    finally:
        await patient.destroy(server.server_id)
        await patient.close()


async def test_the_test_image_stops_gracefully(driver, podman):
    server = await driver.spawn(spec(image_ref=TEST_IMAGE))
    started = time.monotonic()
    await driver.power_off(server.server_id)
    assert time.monotonic() - started < 1
    assert podman.containers.get(f"stratus-{server.server_id}").attrs["State"]["ExitCode"] == 0


async def test_unknown_image_names_the_local_ones(driver):
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(spec(image_ref="docker.io/library/alpine:latest"))
    assert TEST_IMAGE in refused.value.message
    assert "never pulls" in refused.value.message


async def test_a_server_id_that_cannot_name_a_container_is_refused(driver):
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(spec(server_id="../etc"))
    assert refused.value.code == "hostagent.invalid_server_id"
    with pytest.raises(NotFound):
        await driver.get("../etc")


async def test_podman_unreachable_is_a_clear_error(tmp_path):
    socket = f"unix://{tmp_path}/nobody.sock"
    lost = ContainerDriver(socket_url=socket)
    try:
        for call in (lost.describe_host(), lost.spawn(spec()), lost.list_servers()):
            with pytest.raises(Unavailable) as refused:
                await asyncio.wait_for(call, timeout=10)
            assert refused.value.code == "hostagent.hypervisor_unavailable"
            assert socket in refused.value.message
            assert "podman system service" in refused.value.message
    finally:
        await lost.close()


async def test_concurrent_spawns_of_one_id_make_one_container(driver):
    wanted = spec()
    others = [spec() for _ in range(3)]
    made = await asyncio.gather(*(driver.spawn(s) for s in [*[wanted] * 5, *others]))
    assert {s.server_id for s in made} == {wanted.server_id, *(o.server_id for o in others)}
    assert len(await driver.list_servers()) == 4
