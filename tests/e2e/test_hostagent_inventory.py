"""The agent's inventory report against real placement: changes, conflicts, operator traits.

The reporter runs in the test process (with the fake driver) so the test can
change the host's size between reports; placement is the mesh's.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from services.common.config import HostAgentSection
from services.common.errors import AlreadyExists
from services.hostagent.drivers.base import HostResources
from services.hostagent.drivers.fake import FakeDriver
from services.hostagent.identity import HostIdentity
from services.hostagent.inventory import InventoryReporter
from tests.placement_client import SERVICE, Placement


@pytest.fixture
async def placement_channel(sqlite_mesh):
    async with grpc.aio.insecure_channel(sqlite_mesh.layout.address("placement")) as channel:
        yield channel


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


def reporter(channel, driver, host=None) -> tuple[InventoryReporter, str]:
    """A reporter for a new host; and the host's provider uuid."""
    identity = HostIdentity(host or f"h-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()))
    section = HostAgentSection(reserved_ram_mb=1024, cpu_allocation_ratio=2.0)
    return InventoryReporter(channel, identity, driver, section, SERVICE), identity.provider_uuid


def inventory_of(placement, provider_uuid):
    reply = placement.call(
        placement.providers.GetInventories, rp_pb.GetInventoriesRequest(uuid=provider_uuid)
    )
    return {i.resource_class: (i.total, i.reserved, i.allocation_ratio) for i in reply.inventories}


async def test_a_changed_host_is_reported_and_an_unchanged_one_is_not(placement_channel, placement):
    driver = FakeDriver(HostResources(8, 16384, 100), frozenset({"cirros"}))
    agent, uuid_ = reporter(placement_channel, driver)
    assert await agent.report_if_changed()
    assert inventory_of(placement, uuid_) == {
        "VCPU": (8, 0, 2.0),
        "MEMORY_MB": (16384, 1024, 1.0),
        "DISK_GB": (100, 0, 1.0),
    }
    generation = placement.get(uuid_).generation
    assert not await agent.report_if_changed()
    assert placement.get(uuid_).generation == generation  # nothing written

    driver.resources = HostResources(16, 32768, 100)  # memory and CPUs added
    assert await agent.report_if_changed()
    assert inventory_of(placement, uuid_)["VCPU"] == (16, 0, 2.0)
    assert inventory_of(placement, uuid_)["MEMORY_MB"] == (32768, 1024, 1.0)


async def test_traits_an_operator_set_are_kept(placement_channel, placement):
    driver = FakeDriver(HostResources(8, 16384, 100), frozenset({"cirros"}))
    agent, uuid_ = reporter(placement_channel, driver)
    await agent.report_if_changed()
    placement.traits(uuid_, "CUSTOM_RACK_7", "CUSTOM_DRIVER_FAKE", "COMPUTE_NET_ATTACH_INTERFACE")

    agent.last = None  # as after a restart
    await agent.report_if_changed()
    traits = set(
        placement.call(
            placement.providers.GetProviderTraits, rp_pb.GetProviderTraitsRequest(uuid=uuid_)
        ).traits
    )
    assert traits == {"CUSTOM_RACK_7", "CUSTOM_DRIVER_FAKE", "COMPUTE_NET_ATTACH_INTERFACE"}


async def test_a_host_name_taken_by_another_provider_is_refused_with_advice(
    placement_channel, placement
):
    taken = placement.provider(name=f"twin-{uuid.uuid4().hex[:6]}")
    driver = FakeDriver(HostResources(8, 16384, 100), frozenset({"cirros"}))
    agent, _ = reporter(placement_channel, driver, host=taken.name)
    with pytest.raises(AlreadyExists) as refused:
        await agent.report_if_changed()
    assert "hostagent.provider_uuid" in refused.value.message
    assert [
        p.uuid
        for p in placement.call(
            placement.providers.ListResourceProviders,
            rp_pb.ListResourceProvidersRequest(name=taken.name),
        ).resource_providers
    ] == [taken.uuid]


async def test_a_host_with_a_new_uuid_creates_its_provider_without_looking_it_up(
    placement_channel, placement
):
    driver = FakeDriver(HostResources(8, 16384, 100), frozenset({"cirros"}))
    identity = HostIdentity(f"h-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), new=True)
    agent = InventoryReporter(placement_channel, identity, driver, HostAgentSection(), SERVICE)
    looked_up = []
    existing = agent._existing

    async def spy(provider_uuid):
        looked_up.append(provider_uuid)
        return await existing(provider_uuid)

    agent._existing = spy
    assert await agent.report_if_changed()
    assert looked_up == [] and placement.get(identity.provider_uuid).name == identity.host
    driver.resources = HostResources(16, 16384, 100)
    assert await agent.report_if_changed()  # later reports look up as ever
    assert looked_up == [identity.provider_uuid]
