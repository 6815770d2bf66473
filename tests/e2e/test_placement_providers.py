"""Resource providers, trees, inventories, traits and aggregates (gRPC; SQLite and PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest
from stratus.placement.v1 import resource_providers_pb2 as pb

from tests.placement_client import Placement, new_uuid, reason, rpc_error


def test_create_get_and_list_by_filters(placement):
    aggregate = new_uuid()
    a = placement.provider(VCPU=8, MEMORY_MB=4096)
    b = placement.provider(VCPU=2, MEMORY_MB=1024)
    placement.traits(a.uuid, "HW_CPU_X86_AVX2", "CUSTOM_GOLD")
    placement.aggregates(a.uuid, aggregate)
    assert a.root_uuid == a.uuid and a.parent_uuid == "" and a.generation == 1

    def names(**filters):
        reply = placement.call(
            placement.providers.ListResourceProviders, pb.ListResourceProvidersRequest(**filters)
        )
        return {p.uuid for p in reply.resource_providers}

    assert names(name=a.name) == {a.uuid}
    assert names(uuid=b.uuid) == {b.uuid}
    assert names(member_of=[aggregate]) == {a.uuid}
    assert a.uuid in names(required_traits=["CUSTOM_GOLD"]) and b.uuid not in names(
        required_traits=["CUSTOM_GOLD"]
    )
    fitting = names(resources="VCPU:4,MEMORY_MB:2048")
    assert a.uuid in fitting and b.uuid not in fitting


def test_children_share_the_root_and_reparenting_moves_the_subtree(placement):
    root = placement.provider()
    numa = placement.provider(parent=root.uuid)
    pf = placement.provider(parent=numa.uuid)
    assert (numa.root_uuid, pf.root_uuid, pf.parent_uuid) == (root.uuid, root.uuid, numa.uuid)

    other = placement.provider()
    moved = placement.call(
        placement.providers.UpdateResourceProvider,
        pb.UpdateResourceProviderRequest(
            uuid=numa.uuid, generation=numa.generation, name=numa.name, parent_uuid=other.uuid
        ),
    )
    assert (moved.parent_uuid, moved.root_uuid) == (other.uuid, other.uuid)
    assert placement.get(pf.uuid).root_uuid == other.uuid

    tree = placement.call(
        placement.providers.ListResourceProviders, pb.ListResourceProvidersRequest(in_tree=pf.uuid)
    )
    assert {p.uuid for p in tree.resource_providers} == {other.uuid, numa.uuid, pf.uuid}


def test_a_provider_cannot_become_its_own_ancestor(placement):
    root = placement.provider()
    child = placement.provider(parent=root.uuid)
    error = rpc_error(
        lambda: placement.call(
            placement.providers.UpdateResourceProvider,
            pb.UpdateResourceProviderRequest(
                uuid=root.uuid, generation=root.generation, name=root.name, parent_uuid=child.uuid
            ),
        )
    )
    assert (
        error.code() == grpc.StatusCode.INVALID_ARGUMENT
        and reason(error) == "placement.provider_cycle"
    )
    assert placement.get(root.uuid).parent_uuid == ""


def test_duplicate_names_and_unknown_parents_are_refused(placement):
    first = placement.provider()
    error = rpc_error(lambda: placement.provider(name=first.name))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = rpc_error(lambda: placement.provider(parent=new_uuid()))
    assert reason(error) == "placement.parent_not_found"


def test_delete_is_refused_while_children_or_allocations_exist(placement):
    root = placement.provider(VCPU=4)
    child = placement.provider(parent=root.uuid)
    error = rpc_error(
        lambda: placement.call(
            placement.providers.DeleteResourceProvider,
            pb.DeleteResourceProviderRequest(uuid=root.uuid),
        )
    )
    assert (
        error.code() == grpc.StatusCode.ABORTED
        and reason(error) == "placement.provider_has_children"
    )
    placement.call(
        placement.providers.DeleteResourceProvider,
        pb.DeleteResourceProviderRequest(uuid=child.uuid),
    )

    consumer = new_uuid()
    placement.claim(consumer, {root.uuid: {"VCPU": 1}})
    error = rpc_error(
        lambda: placement.call(
            placement.providers.DeleteResourceProvider,
            pb.DeleteResourceProviderRequest(uuid=root.uuid),
        )
    )
    assert reason(error) == "placement.provider_in_use"
    placement.claim(consumer, {}, generation=1)
    placement.call(
        placement.providers.DeleteResourceProvider, pb.DeleteResourceProviderRequest(uuid=root.uuid)
    )
    assert rpc_error(lambda: placement.get(root.uuid)).code() == grpc.StatusCode.NOT_FOUND


def test_inventory_writes_check_and_bump_the_generation(placement):
    rp = placement.provider()
    first = placement.set_inventory(rp.uuid, 0, VCPU=8)
    assert first.resource_provider_generation == 1
    error = rpc_error(lambda: placement.set_inventory(rp.uuid, 0, VCPU=16))
    assert (
        error.code() == grpc.StatusCode.ABORTED and reason(error) == "placement.concurrent_update"
    )
    assert "generation 1" in error.details()
    inventories = placement.call(
        placement.providers.GetInventories, pb.GetInventoriesRequest(uuid=rp.uuid)
    )
    assert [(i.resource_class, i.total) for i in inventories.inventories] == [("VCPU", 8)]


def test_inventory_defaults_and_one_class_at_a_time(placement):
    rp = placement.provider(VCPU=8)
    reply = placement.call(
        placement.providers.SetInventory,
        pb.SetInventoryRequest(
            uuid=rp.uuid,
            resource_provider_generation=rp.generation,
            inventory=pb.Inventory(
                resource_class="DISK_GB", total=100, reserved=10, allocation_ratio=1.5
            ),
        ),
    )
    disk = {i.resource_class: i for i in reply.inventories}["DISK_GB"]
    assert (disk.min_unit, disk.max_unit, disk.step_size) == (1, 100, 1)
    assert {i.resource_class for i in reply.inventories} == {"VCPU", "DISK_GB"}
    reply = placement.call(
        placement.providers.DeleteInventory,
        pb.DeleteInventoryRequest(
            uuid=rp.uuid,
            resource_class="DISK_GB",
            resource_provider_generation=reply.resource_provider_generation,
        ),
    )
    assert [i.resource_class for i in reply.inventories] == ["VCPU"]


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        (pb.Inventory(resource_class="VCPU", total=-1), "inventories[0].total"),
        (pb.Inventory(resource_class="VCPU", total=4, reserved=5), "placement.invalid_inventory"),
        (
            pb.Inventory(resource_class="VCPU", total=4, min_unit=3, max_unit=2),
            "placement.invalid_inventory",
        ),
        (pb.Inventory(resource_class="VPCU", total=4), "placement.unknown_resource_class"),
        (pb.Inventory(resource_class="custom_lower", total=4), "placement.unknown_resource_class"),
    ],
)
def test_bad_inventories_are_refused_and_nothing_changes(placement, inventory, expected):
    rp = placement.provider(VCPU=8)
    error = rpc_error(
        lambda: placement.call(
            placement.providers.ReplaceInventories,
            pb.ReplaceInventoriesRequest(
                uuid=rp.uuid, resource_provider_generation=rp.generation, inventories=[inventory]
            ),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details() or reason(error) == expected
    after = placement.get(rp.uuid)
    assert after.generation == rp.generation
    assert placement.usages(rp.uuid) == {"VCPU": 0}


def test_custom_classes_and_traits_are_created_on_first_use(placement):
    name = f"CUSTOM_T{new_uuid()[:8].upper()}"
    rp = placement.provider(**{name: 3})
    placement.traits(rp.uuid, name)
    from stratus.placement.v1 import catalog_pb2

    classes = placement.call(
        placement.catalog.ListResourceClasses, catalog_pb2.ListResourceClassesRequest()
    )
    assert (name, False) in {(c.name, c.standard) for c in classes.resource_classes}
    assert ("VCPU", True) in {(c.name, c.standard) for c in classes.resource_classes}
    traits = placement.call(
        placement.catalog.ListTraits, catalog_pb2.ListTraitsRequest(prefix="CUSTOM_T")
    )
    assert name in {t.name for t in traits.traits}
    error = rpc_error(lambda: placement.traits(rp.uuid, "HW_CPU_X86_AVX3000"))
    assert reason(error) == "placement.unknown_trait"


def test_lowering_capacity_below_allocations_is_refused(placement):
    rp = placement.provider(VCPU=8, MEMORY_MB=1024)
    placement.claim(new_uuid(), {rp.uuid: {"VCPU": 6}})
    generation = placement.get(rp.uuid).generation
    error = rpc_error(lambda: placement.set_inventory(rp.uuid, generation, VCPU=4, MEMORY_MB=1024))
    assert error.code() == grpc.StatusCode.ABORTED and reason(error) == "placement.inventory_in_use"
    error = rpc_error(lambda: placement.set_inventory(rp.uuid, generation, MEMORY_MB=1024))
    assert reason(error) == "placement.inventory_in_use"
    assert placement.usages(rp.uuid) == {"VCPU": 6, "MEMORY_MB": 0}
    assert placement.set_inventory(
        rp.uuid, generation, VCPU=6, MEMORY_MB=1024
    ).resource_provider_generation


def test_members_cannot_use_placement(mesh):
    with mesh.channel("placement") as channel:
        member = Placement(channel, metadata=(("x-stratus-roles", "member"),))
        error = rpc_error(lambda: member.provider())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_custom_names_are_deleted_only_when_unused(placement):
    from stratus.placement.v1 import catalog_pb2 as cat

    name = f"CUSTOM_D{new_uuid()[:8].upper()}"
    placement.call(placement.catalog.CreateTrait, cat.CreateTraitRequest(name=name))
    placement.call(placement.catalog.CreateResourceClass, cat.CreateResourceClassRequest(name=name))
    rp = placement.provider(**{name: 1})
    placement.traits(rp.uuid, name)
    error = rpc_error(
        lambda: placement.call(placement.catalog.DeleteTrait, cat.DeleteTraitRequest(name=name))
    )
    assert reason(error) == "placement.trait_in_use"
    error = rpc_error(
        lambda: placement.call(
            placement.catalog.DeleteResourceClass, cat.DeleteResourceClassRequest(name=name)
        )
    )
    assert reason(error) == "placement.resource_class_in_use"
    error = rpc_error(
        lambda: placement.call(
            placement.catalog.DeleteTrait, cat.DeleteTraitRequest(name="HW_CPU_X86_AVX2")
        )
    )
    assert reason(error) == "placement.standard_name"

    placement.traits(rp.uuid)
    placement.call(placement.catalog.DeleteTrait, cat.DeleteTraitRequest(name=name))
    error = rpc_error(
        lambda: placement.call(placement.catalog.DeleteTrait, cat.DeleteTraitRequest(name=name))
    )
    assert reason(error) == "placement.trait_not_found"
