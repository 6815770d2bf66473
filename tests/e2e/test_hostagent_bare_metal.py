"""Bare metal through the mesh: a redfish agent's machines in placement, chosen by the
scheduler, booted by the agent, and the BMC credentials nowhere to be seen.

The agent is a real process with the redfish driver, enrolling the three
machines of sushy-tools' emulator (tests/drivers/redfish_host.py) under a
profile of its own, in a zone of its own, so nothing else on the shared mesh
can ask for them.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import replace

import grpc
import pytest
from stratus.hostagent.v1 import hostagent_pb2 as pb
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb
from stratus.scheduler.v1 import scheduler_pb2 as sched_pb

from deploy.local.mesh import process_env, start_service
from services.common.config import HostAgentSection
from services.hostagent.drivers.base import ChildProvider, HostDescription, HostResources
from services.hostagent.identity import HostIdentity
from services.hostagent.inventory import InventoryReporter
from tests.compute_client import create, member_of, wait
from tests.drivers.redfish_host import (
    MACHINES,
    PASSWORD,
    USERNAME,
    require_redfish,
    shared_emulator,
    write_machines_file,
)
from tests.harness import ADMIN
from tests.hostagent_client import agent, call, providers_named, spawn_request, wait_for
from tests.placement_client import SERVICE, Placement
from tests.scheduler_client import scheduler, select


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


@pytest.fixture
def metal_agent(sqlite_mesh, tmp_path):
    """A redfish agent in a zone of its own; (host, zone, profile's class, address, log)."""
    require_redfish()
    emulator = shared_emulator()
    profile = f"t{uuid.uuid4().hex[:8]}"
    machines = [replace(m, profile=profile) for m in MACHINES]
    host, zone = f"metal-{uuid.uuid4().hex[:6]}", f"az-{uuid.uuid4().hex[:6]}"
    env = process_env(sqlite_mesh.layout) | {
        "STRATUS_LOG_LEVEL": "DEBUG",  # sushy logs every request: none may show a secret
        "STRATUS_HOSTAGENT__HOST": host,
        "STRATUS_HOSTAGENT__AVAILABILITY_ZONE": zone,
        "STRATUS_HOSTAGENT__DRIVER": "redfish",
        "STRATUS_HOSTAGENT__REDFISH__MACHINES_FILE": str(
            write_machines_file(tmp_path / "etc", emulator, machines)
        ),
    }
    log = tmp_path / f"{host}.log"
    with log.open("ab") as out:
        proc, address = start_service("hostagent", env, stdout=out, stderr=subprocess.STDOUT)
    yield host, zone, f"CUSTOM_BAREMETAL_{profile.upper()}", address, log
    proc.terminate()
    proc.wait(15)


def inventories(placement, provider_uuid):
    reply = placement.call(
        placement.providers.GetInventories, rp_pb.GetInventoriesRequest(uuid=provider_uuid)
    )
    return {i.resource_class: (i.total, i.min_unit, i.max_unit) for i in reply.inventories}


class Machines:
    """A driver stand-in whose child providers the test changes between reports."""

    name = "redfish"

    def __init__(self, *children: ChildProvider) -> None:
        self.children = children

    async def describe_host(self) -> HostDescription:
        return HostDescription(
            "redfish", "stand-in", HostResources(0, 0, 0), 0, children=self.children
        )


def machine_providers(placement, host):
    found = [p for m in MACHINES for p in providers_named(placement, f"{host}/{m.name}")]
    return found if len(found) == len(MACHINES) else None


def try_select(channel, server_id, **request):
    """The scheduler's choice, or None while it cannot see the host yet."""
    try:
        return select(
            scheduler(channel),
            sched_pb.SelectDestinationsRequest(
                instance_ids=[server_id], project_id="project-a", user_id="alice", **request
            ),
        )
    except grpc.RpcError:
        return None


def test_machines_are_whole_children_the_scheduler_places_on_and_the_agent_boots(
    sqlite_mesh, placement, metal_agent
):
    host, zone, machine_class, address, log = metal_agent
    _, children = wait_for(lambda: machine_providers(placement, host), 15, "machines in placement")
    (root,) = providers_named(placement, host)
    assert {c.parent_uuid for c in children} == {root.uuid}
    # The host offers nothing of its own; each machine is one unit, only to be had whole.
    for child in children:
        wait_for(lambda c=child: inventories(placement, c.uuid), 10, "the machine's inventory")
        assert inventories(placement, child.uuid) == {machine_class: (1, 1, 1)}
    assert inventories(placement, root.uuid) == {}

    # The scheduler places by root provider, as for any host; the claim is on one machine.
    server_id = str(uuid.uuid4())
    with sqlite_mesh.channel("scheduler") as channel:
        _, reply = wait_for(
            lambda: try_select(
                channel, server_id, resources={machine_class: 1}, availability_zone=zone
            ),
            15,
            "the scheduler choosing the host",
        )
    (chosen,) = reply.selections
    assert chosen.destination.host == host
    (allocation,) = chosen.destination.allocations
    assert dict(allocation.resources) == {machine_class: 1}
    (provider,) = [c for c in children if c.uuid == allocation.resource_provider_uuid]
    machine = {m.name: m for m in MACHINES}[provider.name.removeprefix(f"{host}/")]

    emulator = shared_emulator()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = agent(channel)
            spawned = call(
                stub.Spawn,
                spawn_request(server_id, host=host, allocations=chosen.destination.allocations),
            )
            assert spawned.id == server_id
            assert emulator.power_state(machine) == "On"  # the machine placement gave it
            info = call(stub.GetHostInfo, pb.GetHostInfoRequest(host=host))
            listed = call(stub.ListServers, pb.ListServersRequest(host=host))
            assert (info.driver, info.server_count) == ("redfish", 1)
            assert [s.id for s in listed.servers] == [server_id]
            for answer in (info, listed, spawned):
                shown = str(answer) + answer.SerializeToString().decode("latin-1")
                assert PASSWORD not in shown and USERNAME not in shown
            call(stub.Destroy, pb.DestroyRequest(host=host, server_id=server_id))
            assert emulator.power_state(machine) == "Off"
    finally:
        placement.call(
            placement.allocations.DeleteAllocations,
            alloc_pb.DeleteAllocationsRequest(consumer_uuid=server_id),
        )
    text = log.read_text()
    assert "HTTP request: GET" in text  # sushy's debug lines were written
    assert PASSWORD not in text and USERNAME not in text


async def test_a_machine_no_longer_reported_leaves_placement_once_nothing_holds_it(
    sqlite_mesh, placement, caplog
):
    gold = f"CUSTOM_BAREMETAL_T{uuid.uuid4().hex[:8].upper()}"
    kept, dropped = (ChildProvider(str(uuid.uuid4()), n, {gold: 1}) for n in ("bm-0", "bm-1"))
    identity = HostIdentity(f"metal-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    driver = Machines(kept, dropped)
    async with grpc.aio.insecure_channel(sqlite_mesh.layout.address("placement")) as channel:
        reporter = InventoryReporter(channel, identity, driver, HostAgentSection(), SERVICE)
        await reporter.report_if_changed()
        assert inventories(placement, dropped.uuid) == {gold: (1, 1, 1)}
        # Someone else's child of the host (an operator's, say) is not the agent's to delete.
        theirs = placement.provider(
            name=f"pdu-{uuid.uuid4().hex[:6]}", parent=identity.provider_uuid
        )
        server = str(uuid.uuid4())
        placement.claim(server, {dropped.uuid: {gold: 1}})

        driver.children = (kept,)  # bm-1 left the machines file while a server holds it
        await reporter.report_if_changed()
        assert "cannot delete stale provider" in caplog.text
        assert placement.get(dropped.uuid).uuid == dropped.uuid

        placement.call(
            placement.allocations.DeleteAllocations,
            alloc_pb.DeleteAllocationsRequest(consumer_uuid=server),
        )
        reporter.last = None  # the next report, as after the interval or a restart
        await reporter.report_if_changed()
    assert providers_named(placement, f"{identity.host}/bm-1") == []
    assert [p.uuid for p in providers_named(placement, f"{identity.host}/bm-0")] == [kept.uuid]
    assert placement.get(theirs.uuid).parent_uuid == identity.provider_uuid


def test_a_bare_metal_flavor_gets_a_whole_machine_through_the_api(
    sqlite_mesh, placement, metal_agent
):
    host, zone, machine_class, _, _ = metal_agent
    wait_for(lambda: machine_providers(placement, host), 15, "machines in placement")
    flavor = f"bm-{uuid.uuid4().hex[:6]}"
    specs = {
        f"resources:{machine_class}": "1",
        "resources:VCPU": "0",
        "resources:MEMORY_MB": "0",
        "resources:DISK_GB": "0",
    }
    with sqlite_mesh.rest(ADMIN) as admin:
        made = admin.post(
            "/v1/flavors",
            json={"name": flavor, "vcpus": 2, "ram_mb": 4096, "extra_specs": specs},
        )
        assert made.status_code == 200, made.text
        bad = admin.post(
            "/v1/flavors",
            json={
                "name": f"{flavor}-x",
                "vcpus": 1,
                "ram_mb": 1,
                "extra_specs": {"resources:lower": "one"},
            },
        )
        assert bad.status_code == 400
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, flavor, availability_zone=zone)
        active = wait(client, server["id"])
        assert (active["status"], active["host"]) == ("ACTIVE", host), active.get("fault")
        (held,) = placement.held(server["id"]).values()
        assert held == {machine_class: 1}  # the whole machine, nothing else
        client.delete(f"/v1/servers/{server['id']}")
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
    assert placement.held(server["id"]) == {}
