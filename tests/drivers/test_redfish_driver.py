"""What only the redfish driver does: whole machines, enrolment, state, credentials, BMC faults.

The behaviour every driver shares is in test_conformance.py. These tests run
against sushy-tools' emulator (redfish_host.py): the shared one, whose three
machines every test may power on and off, or one of their own when they stop
it or need its fake backend (virtual media).
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common.config import HostAgentSection
from services.common.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    StratusError,
    Unavailable,
)
from services.hostagent.drivers.base import PowerState
from services.hostagent.identity import HostIdentity
from services.hostagent.inventory import InventoryReporter
from tests.drivers.redfish_host import (
    DISK_GB,
    HOST,
    MACHINES,
    PASSWORD,
    USERNAME,
    Emulator,
    make_redfish_driver,
    require_redfish,
    shared_emulator,
    write_machines_file,
)
from tests.drivers.specs import spec

require_redfish()

from services.hostagent.drivers.redfish import RedfishDriver, load_enrolment  # noqa: E402
from services.hostagent.drivers.redfish.assignments import Assignment, Assignments  # noqa: E402
from services.hostagent.drivers.redfish.bmc import Bmc  # noqa: E402

BM0, BM1, BM2 = MACHINES


@pytest.fixture
async def driver(tmp_path) -> AsyncIterator[RedfishDriver]:
    made = make_redfish_driver(tmp_path)
    yield made
    for server in await made.list_servers():
        await made.destroy(server.server_id)
    await made.close()


def provider_of(host, name: str) -> str:
    return next(c.uuid for c in host.children if c.name == name)


async def test_each_machine_is_a_child_provider_holding_one_unit_of_its_profile(driver):
    host = await driver.describe_host()
    assert [(c.name, c.resources) for c in host.children] == [
        ("bm-0", {"CUSTOM_BAREMETAL_GOLD": 1}),
        ("bm-1", {"CUSTOM_BAREMETAL_GOLD": 1}),
        ("bm-2", {"CUSTOM_BAREMETAL_SILVER": 1}),
    ]
    assert len({c.uuid for c in host.children}) == 3
    # The host's totals are the machines' (CPUs and memory from their BMCs), but its own
    # provider offers none of them: a flavor gets room only by taking a whole machine.
    assert host.resources == HOST
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # never dialled
    try:
        identity = HostIdentity("metal-1", str(uuid.uuid4()))
        reporter = InventoryReporter(channel, identity, driver, HostAgentSection(), ())
        report = reporter.wanted(host)
    finally:
        await channel.close()
    assert report.inventories == ()
    assert report.children == host.children
    assert "CUSTOM_DRIVER_REDFISH" in report.traits


async def test_spawn_takes_the_machine_placement_allocated_and_no_other(driver):
    host = await driver.describe_host()
    bm1 = provider_of(host, "bm-1")
    first = spec(allocations={bm1: {"CUSTOM_BAREMETAL_GOLD": 1}})
    server = await driver.spawn(first)
    assert server.power_state is PowerState.RUNNING
    assert shared_emulator().power_state(BM1) == "On"

    with pytest.raises(Conflict) as busy:
        await driver.spawn(spec(allocations={bm1: {"CUSTOM_BAREMETAL_GOLD": 1}}))
    assert busy.value.code == "hostagent.machine_busy"
    assert first.server_id in busy.value.message

    elsewhere = spec(allocations={str(uuid.uuid4()): {"VCPU": 1, "MEMORY_MB": 512}})
    with pytest.raises(InvalidArgument) as refused:
        await driver.spawn(elsewhere)
    assert refused.value.code == "hostagent.no_machine_allocated"
    assert [s.server_id for s in await driver.list_servers()] == [first.server_id]


async def test_without_an_allocation_spawn_takes_the_first_free_machine_that_fits(driver):
    big = await driver.spawn(spec(vcpus=8, ram_mb=16384))  # only bm-2 has 8 CPUs
    assert shared_emulator().power_state(BM2) == "On"
    assert (big.vcpus, big.ram_mb) == (8, 16384)  # the flavor's sizes, as asked for
    with pytest.raises(Conflict) as full:
        await driver.spawn(spec(vcpus=5))
    assert full.value.code == "hostagent.no_free_machine"
    with pytest.raises(InvalidArgument) as too_large:
        await driver.spawn(spec(vcpus=9))
    assert too_large.value.code == "hostagent.flavor_too_large"
    with pytest.raises(InvalidArgument) as no_disk:
        await driver.spawn(spec(disk_gb=DISK_GB + 1))
    assert no_disk.value.code == "hostagent.flavor_too_large"
    for _ in range(2):
        await driver.spawn(spec())
    with pytest.raises(Conflict) as none_left:
        await driver.spawn(spec())
    assert none_left.value.code == "hostagent.no_free_machine"
    assert (await driver.describe_host()).free_ram_mb == 0


async def test_servers_and_provider_uuids_survive_a_new_driver_instance(tmp_path):
    before = make_redfish_driver(tmp_path)
    wanted = spec()
    await before.spawn(wanted)
    children = (await before.describe_host()).children
    await before.close()

    after = make_redfish_driver(tmp_path)  # as after an agent restart: same state directory
    try:
        assert (await after.describe_host()).children == children
        (server,) = await after.list_servers()
        assert (server.server_id, server.power_state) == (wanted.server_id, PowerState.RUNNING)
        again = await after.spawn(wanted)  # idempotent: no second machine taken
        assert again.server_id == wanted.server_id
        assert len(await after.list_servers()) == 1
        await after.destroy(wanted.server_id)
        assert await after.list_servers() == []
        assert shared_emulator().power_state(BM0) == "Off"
    finally:
        await after.close()


async def test_a_spawn_cut_short_is_finished_by_the_next_spawn_of_the_same_id(tmp_path):
    wanted = spec()
    # What a crash between taking bm-1 and booting it leaves in the state directory.
    Assignments(tmp_path / "state" / "redfish.json").assign(
        wanted.server_id, Assignment.of(wanted, "bm-1")
    )
    driver = make_redfish_driver(tmp_path)
    try:
        assert await driver.list_servers() == []  # not a server until it has booted
        with pytest.raises(NotFound):
            await driver.get(wanted.server_id)
        server = await driver.spawn(wanted)
        assert server.power_state is PowerState.RUNNING
        assert shared_emulator().power_state(BM1) == "On"  # the machine it had taken
        await driver.destroy(wanted.server_id)
    finally:
        await driver.close()


async def test_an_unreachable_bmc_is_a_clear_error_and_takes_no_machine(tmp_path):
    nobody = Emulator(tmp_path / "bmc")  # never started: nothing listens on its port
    driver = make_redfish_driver(tmp_path, emulator=nobody)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as unreachable:
            await driver.spawn(spec())
        assert time.monotonic() - started < 5
        assert unreachable.value.code == "hostagent.bmc_unreachable"
        assert "bm-0" in unreachable.value.message
        assert "Connection refused" in unreachable.value.message
        # The host still describes its machines (placement keeps them), knowing no sizes.
        host = await driver.describe_host()
        assert len(host.children) == 3
        assert host.resources.vcpus == 0
        assert await driver.list_servers() == []
    finally:
        await driver.close()


async def test_a_bmc_gone_after_spawn_shows_nostate_and_keeps_its_machine(tmp_path):
    bmc = Emulator(tmp_path / "bmc").start()
    driver = make_redfish_driver(tmp_path, emulator=bmc)
    try:
        wanted = spec()
        await driver.spawn(wanted)
        bmc.stop()
        (server,) = await driver.list_servers()
        assert server.power_state is PowerState.NOSTATE
        with pytest.raises(Unavailable):
            await driver.get(wanted.server_id)
        with pytest.raises(Unavailable):
            await driver.destroy(wanted.server_id)
        # Not forgotten: a machine that may still run must not be handed out again.
        assert [s.server_id for s in await driver.list_servers()] == [wanted.server_id]
        bmc.start()  # same port; the emulator comes back with its machines off
        await driver.destroy(wanted.server_id)
        assert await driver.list_servers() == []
    finally:
        bmc.stop()
        await driver.close()


async def test_a_machine_slower_than_the_power_timeout_is_a_clear_fault_and_stays_free(tmp_path):
    # The fake backend takes 1-11 s per power change, and reports no CPUs or memory
    # (which then limit no flavor). It sets the change for int(now) + 1..11 s, so a
    # request late in a second may take effect within the timeout (a draw of 1 s in
    # the last 0.3 s of a second: about 3% of runs failed). Started at the top of a
    # second, the change is more than the timeout away unless the spawn's steps
    # before it take 0.7 s.
    bmc = Emulator(tmp_path / "bmc", machines=(BM0,), fake=True).start()
    enrolment = load_enrolment(write_machines_file(tmp_path / "etc", bmc, (BM0,)))
    driver = RedfishDriver(enrolment, tmp_path / "state", power_timeout_s=0.3)
    try:
        await asyncio.sleep(1 - time.time() % 1)
        with pytest.raises(StratusError) as slow:
            await driver.spawn(spec(vcpus=64))
        assert slow.value.code == "hostagent.driver_error"
        assert "machine bm-0 is not RUNNING after 0.3 s" in slow.value.message
        assert await driver.list_servers() == []
        assert Assignments(tmp_path / "state" / "redfish.json").servers == {}  # given back
    finally:
        await driver.close()
        bmc.stop()


def machines_file(tmp_path, text: str):
    path = tmp_path / "machines.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (f'bmc = "http://{USERNAME}:{PASSWORD}@10.0.0.1"', "machine.0.bmc"),
        (f'bmc = "http://10.0.0.1"\nusername = "{USERNAME}"\npasword = "{PASSWORD}"', "pasword"),
        ('bmc = "http://10.0.0.1"', "give either username and password"),
        (f'bmc = "http://10.0.0.1"\nusername = "{USERNAME}"\npassword = 7', "password"),
        (f'bmc = "ftp://10.0.0.1"\nusername = "{USERNAME}"\npassword = "{PASSWORD}"', "bmc"),
    ],
    ids=["credentials-in-url", "misspelt-key", "no-credentials", "not-a-string", "scheme"],
)
def test_machines_file_mistakes_are_named_without_echoing_any_value(tmp_path, entry, named):
    path = machines_file(tmp_path, f'[[machine]]\nname = "bm-0"\nprofile = "gold"\n{entry}\n')
    with pytest.raises(InvalidArgument) as refused:
        load_enrolment(path)
    assert refused.value.code == "hostagent.invalid_machines_file"
    assert named in refused.value.message
    assert PASSWORD not in refused.value.message
    assert USERNAME not in refused.value.message


def test_machines_file_refuses_a_machine_enrolled_twice_and_unknown_boot_sources(tmp_path):
    emulator = Emulator(tmp_path / "bmc")
    path = write_machines_file(tmp_path, emulator, machines=(BM0, BM0))
    with pytest.raises(InvalidArgument, match="enrolled twice: bm-0"):
        load_enrolment(path)
    path = write_machines_file(tmp_path, emulator, images={"cirros": "floppy"})
    with pytest.raises(InvalidArgument, match="cirros: must be pxe, hdd or an http"):
        load_enrolment(path)


def test_a_machine_running_a_server_cannot_leave_the_file_silently(tmp_path):
    wanted = spec()
    Assignments(tmp_path / "state" / "redfish.json").assign(
        wanted.server_id, Assignment.of(wanted, "bm-9")
    )
    enrolment = load_enrolment(write_machines_file(tmp_path / "etc", Emulator(tmp_path)))
    with pytest.raises(InvalidArgument, match="bm-9 run servers but are no longer"):
        RedfishDriver(enrolment, tmp_path / "state")


async def test_wrong_credentials_are_refused_clearly(tmp_path):
    path = write_machines_file(tmp_path, shared_emulator(), credentials_file=False)
    path.write_text(path.read_text().replace(PASSWORD, "not-the-password"))
    driver = RedfishDriver(load_enrolment(path), tmp_path / "state")
    try:
        with pytest.raises(Unavailable) as denied:
            await driver.spawn(spec())
        assert denied.value.code == "hostagent.bmc_access_denied"
        assert "HTTP 401" in denied.value.message
        assert "not-the-password" not in denied.value.message
    finally:
        await driver.close()


async def test_credentials_are_never_logged_or_shown(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    driver = make_redfish_driver(tmp_path / "good")
    nobody = make_redfish_driver(tmp_path / "dead", emulator=Emulator(tmp_path / "bmc"))
    try:
        server = await driver.spawn(spec())
        await driver.reboot(server.server_id, hard=False)
        await driver.power_off(server.server_id)
        shown = [repr(driver.machines), repr(await driver.describe_host()), repr(server)]
        shown += [repr(await driver.list_servers())]
        await driver.destroy(server.server_id)
        with pytest.raises(Unavailable) as failed:
            await nobody.spawn(spec())
        shown.append(failed.value.message)
    finally:
        await driver.close()
        await nobody.close()
    everything = caplog.text + "".join(shown)
    assert "bm-0" in everything  # the logs were captured
    assert PASSWORD not in everything
    assert USERNAME not in everything


class _Images(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


async def test_an_image_url_is_inserted_as_virtual_media_and_booted_from_cd(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "live.iso").write_bytes(b"\0" * 2048)
    handler = functools.partial(_Images, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.iso"
    # The fake backend: virtual media works there (not on libvirt's), power changes are slow.
    bmc = Emulator(tmp_path / "bmc", machines=(BM0,), fake=True).start()
    try:
        (machine,) = load_enrolment(write_machines_file(tmp_path / "etc", bmc, (BM0,))).machines
        client = Bmc(machine, timeout_s=10)
        await asyncio.to_thread(client.boot_from, url)
        boot = bmc.get(bmc.system(BM0))["Boot"]
        assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == (
            "Cd",
            "Continuous",
        )
        cd = f"{bmc.system(BM0)}/VirtualMedia/Cd"  # where the emulator's manager links to
        assert (bmc.get(cd)["Inserted"], bmc.get(cd)["Image"]) == (True, url)
        await asyncio.to_thread(client.eject)
        assert bmc.get(cd)["Inserted"] is False
    finally:
        bmc.stop()
        server.shutdown()
