"""The fleet simulator: simulated hosts are real participants of a real mesh.

A small fleet (two processes) joins the session's SQLite mesh in an
availability zone of its own, so servers created in that zone land on its
hosts and nowhere else; it deletes its providers when it stops.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from stratus.hostagent.v1 import hostagent_pb2 as pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from deploy.local.fleet import Fleet
from deploy.local.mesh import process_env
from services.common.liveness import HostLiveness
from tests.compute_client import create, fake_flavor, member_of, wait
from tests.e2e.test_hostagent_registration import FAKE_INVENTORY, etcd_hosts
from tests.hostagent_client import agent, call
from tests.placement_client import Placement

HOSTS = 12
TTL_S = 2


@pytest.fixture(scope="module")
def zone() -> str:
    return f"az-fleet-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def fleet(sqlite_mesh, zone, tmp_path_factory):
    env = process_env(sqlite_mesh.layout) | {
        "STRATUS_HOSTAGENT__AVAILABILITY_ZONE": zone,
        "STRATUS_HOSTAGENT__LIVENESS_TTL_S": str(TTL_S),
    }
    prefix = f"sim-{uuid.uuid4().hex[:4]}-"
    simulated = Fleet(
        env, hosts=HOSTS, processes=2, name_prefix=prefix, logs=tmp_path_factory.mktemp("fleet")
    )
    simulated.start()
    simulated.wait_registered(timeout=60)
    yield simulated
    simulated.stop(delete_providers=True)


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


def test_each_host_is_a_provider_with_inventories_and_a_live_key(
    sqlite_mesh, fleet, zone, placement
):
    providers = {
        p.name: p
        for p in placement.call(
            placement.providers.ListResourceProviders,
            rp_pb.ListResourceProvidersRequest(page_size=1000),
        ).resource_providers
    }
    live = etcd_hosts(sqlite_mesh)
    for name in fleet.names:
        provider = providers[name]
        inventories = {
            i.resource_class: (i.total, i.reserved, i.allocation_ratio)
            for i in placement.call(
                placement.providers.GetInventories, rp_pb.GetInventoriesRequest(uuid=provider.uuid)
            ).inventories
        }
        assert inventories == FAKE_INVENTORY
        traits = placement.call(
            placement.providers.GetProviderTraits,
            rp_pb.GetProviderTraitsRequest(uuid=provider.uuid),
        ).traits
        assert "CUSTOM_DRIVER_FAKE" in traits
        # The same key and value as a real agent, with its simulator's address.
        assert live[name]["address"] == fleet.address_of(name)
        assert live[name]["provider_uuid"] == provider.uuid
        assert live[name]["availability_zone"] == zone


def test_the_endpoint_answers_for_the_host_named_in_the_request(fleet):
    first, last = fleet.names[0], fleet.names[-1]
    for host in (first, last):
        with grpc.insecure_channel(fleet.address_of(host)) as channel:
            info = call(agent(channel).GetHostInfo, pb.GetHostInfoRequest(host=host))
        assert (info.host, info.driver, info.server_count) == (host, "fake", 0)


def test_a_server_boots_on_a_simulated_host_and_deletes_cleanly(sqlite_mesh, fleet, zone):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh), availability_zone=zone)
        server = wait(client, server["id"])
        assert server["status"] == "ACTIVE", server
        host = server["host"]
        assert host in fleet.names
        with grpc.insecure_channel(fleet.address_of(host)) as channel:
            listed = call(agent(channel).ListServers, pb.ListServersRequest(host=host))
        assert [s.id for s in listed.servers] == [server["id"]]

        assert client.delete(f"/v1/servers/{server['id']}").status_code == 200
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
        with grpc.insecure_channel(fleet.address_of(host)) as channel:
            listed = call(agent(channel).ListServers, pb.ListServersRequest(host=host))
        assert not listed.servers


def test_a_crashed_host_leaves_liveness_within_the_ttl(sqlite_mesh, fleet):
    victims = fleet.names[:2]

    async def detection_times() -> list[float]:
        liveness = HostLiveness(sqlite_mesh.layout.address("etcd"))
        await liveness.start()
        try:
            assert all(liveness.is_alive(v) for v in victims)
            crashed_at = time.monotonic()
            assert fleet.crash(victims) == len(victims)
            times = []
            for victim in victims:
                async with asyncio.timeout(TTL_S + 1):
                    await liveness.wait_for(lambda v=victim: not liveness.is_alive(v))
                times.append(time.monotonic() - crashed_at)
            # The others are still renewed.
            assert all(liveness.is_alive(n) for n in fleet.names[len(victims) :])
            return times
        finally:
            await liveness.stop()

    assert max(asyncio.run(detection_times())) <= TTL_S + 1
    assert fleet.status()["hosts"] == HOSTS - len(victims)


def test_stopping_the_fleet_removes_its_keys_and_keeps_its_providers(sqlite_mesh, fleet, placement):
    # A fleet of its own, so the module's fleet keeps running for the tests above.
    env = dict(fleet.env)
    small = Fleet(env, hosts=3, processes=1, name_prefix=f"stop-{uuid.uuid4().hex[:4]}-")
    small.start()
    small.wait_registered(timeout=30)
    assert set(small.names) <= set(etcd_hosts(sqlite_mesh))
    uuids = {n: placement_uuid(placement, n) for n in small.names}
    small.stop()
    assert not set(small.names) & set(etcd_hosts(sqlite_mesh))
    # A restart reuses the same providers, as a real agent does.
    small.start()
    small.wait_registered(timeout=30)
    assert {n: placement_uuid(placement, n) for n in small.names} == uuids
    small.stop(delete_providers=True)
    assert all(placement_uuid(placement, n) is None for n in small.names)


def placement_uuid(placement: Placement, name: str) -> str | None:
    found = placement.call(
        placement.providers.ListResourceProviders, rp_pb.ListResourceProvidersRequest(name=name)
    ).resource_providers
    return found[0].uuid if found else None
