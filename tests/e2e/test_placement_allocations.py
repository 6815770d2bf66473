"""Claims: all or nothing, never beyond capacity, safe to retry (gRPC; SQLite and PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest
from stratus.placement.v1 import allocations_pb2 as pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from tests.placement_client import Placement, new_uuid, reason, rpc_error


def test_claim_records_allocations_and_usage(placement):
    a = placement.provider(VCPU=8, MEMORY_MB=4096)
    b = placement.provider(DISK_GB=100)
    consumer = new_uuid()
    claimed = placement.claim(
        consumer, {a.uuid: {"VCPU": 2, "MEMORY_MB": 1024}, b.uuid: {"DISK_GB": 10}}
    )
    assert claimed.consumer_generation == 1
    assert placement.held(consumer) == {
        a.uuid: {"VCPU": 2, "MEMORY_MB": 1024},
        b.uuid: {"DISK_GB": 10},
    }
    assert placement.usages(a.uuid) == {"VCPU": 2, "MEMORY_MB": 1024}
    assert placement.get(a.uuid).generation == a.generation + 1  # allocations change the provider
    on_a = placement.call(
        placement.providers.GetProviderAllocations, rp_pb.GetProviderAllocationsRequest(uuid=a.uuid)
    )
    assert {c.consumer_uuid: dict(c.resources) for c in on_a.allocations} == {
        consumer: {"VCPU": 2, "MEMORY_MB": 1024}
    }


def test_a_repeated_claim_is_answered_not_doubled(placement):
    rp = placement.provider(VCPU=8)
    consumer = new_uuid()
    placement.claim(consumer, {rp.uuid: {"VCPU": 3}})
    again = placement.claim(consumer, {rp.uuid: {"VCPU": 3}})
    assert again.consumer_generation == 1
    assert placement.usages(rp.uuid) == {"VCPU": 3}
    error = rpc_error(lambda: placement.claim(consumer, {rp.uuid: {"VCPU": 4}}))
    assert (
        error.code() == grpc.StatusCode.ABORTED and reason(error) == "placement.concurrent_update"
    )


def test_over_capacity_claims_leave_nothing_behind(placement):
    a = placement.provider(VCPU=4)
    b = placement.provider(VCPU=4)
    placement.claim(new_uuid(), {b.uuid: {"VCPU": 3}})
    consumer = new_uuid()
    error = rpc_error(lambda: placement.claim(consumer, {a.uuid: {"VCPU": 2}, b.uuid: {"VCPU": 2}}))
    assert (
        error.code() == grpc.StatusCode.ABORTED
        and reason(error) == "placement.insufficient_capacity"
    )
    assert "asked 2, 1 of 4 free" in error.details()
    assert placement.held(consumer) == {}
    assert placement.usages(a.uuid) == {"VCPU": 0}
    assert placement.usages(b.uuid) == {"VCPU": 3}


def test_capacity_honours_reserved_ratio_and_units(placement):
    rp = placement.provider()
    placement.call(
        placement.providers.ReplaceInventories,
        rp_pb.ReplaceInventoriesRequest(
            uuid=rp.uuid,
            resource_provider_generation=rp.generation,
            inventories=[
                rp_pb.Inventory(
                    resource_class="VCPU", total=4, reserved=1, allocation_ratio=2.0
                ),  # capacity 6
                rp_pb.Inventory(
                    resource_class="MEMORY_MB",
                    total=4096,
                    min_unit=256,
                    max_unit=2048,
                    step_size=256,
                ),
            ],
        ),
    )
    # max_unit defaults to total (4): one allocation of 6 is too big, two of 3 fill it.
    assert (
        reason(rpc_error(lambda: placement.claim(new_uuid(), {rp.uuid: {"VCPU": 6}})))
        == "placement.invalid_amount"
    )
    placement.claim(new_uuid(), {rp.uuid: {"VCPU": 3}})
    placement.claim(new_uuid(), {rp.uuid: {"VCPU": 3}})
    assert (
        reason(rpc_error(lambda: placement.claim(new_uuid(), {rp.uuid: {"VCPU": 1}})))
        == "placement.insufficient_capacity"
    )
    for amount in (128, 300, 4096):
        error = rpc_error(lambda a=amount: placement.claim(new_uuid(), {rp.uuid: {"MEMORY_MB": a}}))
        assert (
            error.code() == grpc.StatusCode.INVALID_ARGUMENT
            and reason(error) == "placement.invalid_amount"
        )
    placement.claim(new_uuid(), {rp.uuid: {"MEMORY_MB": 512}})


def test_bad_claims_are_refused_with_the_reason(placement):
    rp = placement.provider(VCPU=4)
    unknown = new_uuid()
    assert (
        reason(rpc_error(lambda: placement.claim(new_uuid(), {unknown: {"VCPU": 1}})))
        == "placement.provider_not_found"
    )
    assert (
        reason(rpc_error(lambda: placement.claim(new_uuid(), {rp.uuid: {"DISK_GB": 1}})))
        == "placement.inventory_not_found"
    )
    error = rpc_error(lambda: placement.claim(new_uuid(), {rp.uuid: {"VCPU": 0}}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "resources" in error.details()
    error = rpc_error(lambda: placement.claim("not-a-uuid", {rp.uuid: {"VCPU": 1}}))
    assert "consumer_uuid" in error.details()
    assert placement.usages(rp.uuid) == {"VCPU": 0}


def test_replace_moves_a_consumer_in_one_step(placement):
    source = placement.provider(VCPU=4)
    target = placement.provider(VCPU=4)
    consumer = new_uuid()
    placement.claim(consumer, {source.uuid: {"VCPU": 4}})
    moved = placement.claim(consumer, {target.uuid: {"VCPU": 4}}, generation=1)
    assert moved.consumer_generation == 2
    assert placement.usages(source.uuid) == {"VCPU": 0}
    assert placement.usages(target.uuid) == {"VCPU": 4}
    stale = rpc_error(lambda: placement.claim(consumer, {source.uuid: {"VCPU": 1}}, generation=1))
    assert reason(stale) == "placement.concurrent_update" and "generation 2" in stale.details()


def test_a_failed_move_keeps_the_old_allocation(placement):
    source = placement.provider(VCPU=4)
    full = placement.provider(VCPU=4)
    placement.claim(new_uuid(), {full.uuid: {"VCPU": 4}})
    consumer = new_uuid()
    placement.claim(consumer, {source.uuid: {"VCPU": 2}})
    assert (
        reason(rpc_error(lambda: placement.claim(consumer, {full.uuid: {"VCPU": 2}}, generation=1)))
        == "placement.insufficient_capacity"
    )
    assert placement.held(consumer) == {source.uuid: {"VCPU": 2}}
    assert placement.usages(source.uuid) == {"VCPU": 2}


def test_delete_releases_and_is_idempotent(placement):
    rp = placement.provider(VCPU=4)
    consumer = new_uuid()
    placement.claim(consumer, {rp.uuid: {"VCPU": 2}})
    with pytest.raises(grpc.RpcError):
        placement.call(
            placement.allocations.DeleteAllocations,
            pb.DeleteAllocationsRequest(consumer_uuid=consumer, consumer_generation=7),
        )
    placement.call(
        placement.allocations.DeleteAllocations, pb.DeleteAllocationsRequest(consumer_uuid=consumer)
    )
    placement.call(
        placement.allocations.DeleteAllocations, pb.DeleteAllocationsRequest(consumer_uuid=consumer)
    )
    assert placement.held(consumer) == {}
    assert placement.usages(rp.uuid) == {"VCPU": 0}


def test_a_batch_is_all_or_nothing(placement):
    source = placement.provider(VCPU=4)
    target = placement.provider(VCPU=4)
    placement.claim(new_uuid(), {target.uuid: {"VCPU": 2}})  # 2 of 4 left on the target
    server, migration = new_uuid(), new_uuid()
    placement.claim(server, {source.uuid: {"VCPU": 3}})

    def batch(amount):
        return pb.BatchPutAllocationsRequest(
            requests=[
                pb.PutAllocationsRequest(
                    consumer_uuid=migration,
                    project_id="project-a",
                    user_id="u",
                    allocations=[
                        pb.Allocation(resource_provider_uuid=source.uuid, resources={"VCPU": 3})
                    ],
                ),
                pb.PutAllocationsRequest(
                    consumer_uuid=server,
                    consumer_generation=1,
                    project_id="project-a",
                    user_id="u",
                    allocations=[
                        pb.Allocation(
                            resource_provider_uuid=target.uuid, resources={"VCPU": amount}
                        )
                    ],
                ),
            ]
        )

    # The migration hands the source to the migration record and claims the target for the server.
    assert (
        reason(
            rpc_error(lambda: placement.call(placement.allocations.BatchPutAllocations, batch(3)))
        )
        == "placement.insufficient_capacity"
    )
    assert placement.held(migration) == {} and placement.held(server) == {source.uuid: {"VCPU": 3}}
    placement.call(placement.allocations.BatchPutAllocations, batch(2))
    assert placement.held(migration) == {source.uuid: {"VCPU": 3}}
    assert placement.held(server) == {target.uuid: {"VCPU": 2}}
    assert placement.usages(source.uuid) == {"VCPU": 3} and placement.usages(target.uuid) == {
        "VCPU": 4
    }


def test_project_usages_add_up_a_projects_consumers(placement):
    project = f"project-{new_uuid()[:8]}"
    a, b = placement.provider(VCPU=8, MEMORY_MB=8192), placement.provider(VCPU=8)
    placement.claim(new_uuid(), {a.uuid: {"VCPU": 2, "MEMORY_MB": 2048}}, project=project)
    placement.claim(new_uuid(), {b.uuid: {"VCPU": 3}}, project=project)
    placement.claim(new_uuid(), {b.uuid: {"VCPU": 1}}, project="someone-else")
    usages = placement.call(
        placement.allocations.GetProjectUsages, pb.GetProjectUsagesRequest(project_id=project)
    )
    assert dict(usages.usages) == {"VCPU": 5, "MEMORY_MB": 2048}


def batch_get(placement, *consumers: str) -> pb.BatchGetAllocationsResponse:
    return placement.call(
        placement.allocations.BatchGetAllocations,
        pb.BatchGetAllocationsRequest(consumer_uuids=consumers),
    )


def test_a_batch_read_answers_the_consumers_that_hold_something(placement):
    a = placement.provider(VCPU=8, MEMORY_MB=4096)
    b = placement.provider(DISK_GB=100)
    first, second, released, unknown = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    placement.claim(first, {a.uuid: {"VCPU": 2, "MEMORY_MB": 1024}, b.uuid: {"DISK_GB": 10}})
    placement.claim(second, {a.uuid: {"VCPU": 1}}, project="project-b")
    placement.claim(released, {a.uuid: {"VCPU": 1}})
    placement.call(
        placement.allocations.DeleteAllocations, pb.DeleteAllocationsRequest(consumer_uuid=released)
    )

    reply = batch_get(placement, second, unknown, released, first)

    # Absent when holding nothing; the others in the order asked, as GetAllocations answers them.
    assert [c.consumer_uuid for c in reply.consumers] == [second, first]
    assert list(reply.consumers) == [
        placement.call(
            placement.allocations.GetAllocations, pb.GetAllocationsRequest(consumer_uuid=c)
        )
        for c in (second, first)
    ]
    assert reply.consumers[0].project_id == "project-b"
    held = {h.resource_provider_uuid: dict(h.resources) for h in reply.consumers[1].allocations}
    assert held == {
        a.uuid: {"VCPU": 2, "MEMORY_MB": 1024},
        b.uuid: {"DISK_GB": 10},
    }
    assert list(batch_get(placement, unknown).consumers) == []


def test_a_batch_read_refuses_bad_ids_and_changes_nothing(placement):
    rp = placement.provider(VCPU=4)
    consumer = new_uuid()
    placement.claim(consumer, {rp.uuid: {"VCPU": 2}})
    too_many = [new_uuid() for _ in range(1001)]
    for bad, field in (
        ([consumer, "not-a-uuid"], "consumer_uuids[1]"),
        ([consumer, consumer], "consumer_uuids"),
        ([], "consumer_uuids"),
        (too_many, "consumer_uuids"),
    ):
        error = rpc_error(lambda ids=bad: batch_get(placement, *ids))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad[:2]
        assert field in error.details()
    assert len(batch_get(placement, *too_many[:1000]).consumers) == 0
    assert placement.held(consumer) == {rp.uuid: {"VCPU": 2}}
    assert placement.usages(rp.uuid) == {"VCPU": 2}


def test_members_cannot_read_allocations_in_batch(mesh):
    with mesh.channel("placement") as channel:
        member = Placement(channel, metadata=(("x-stratus-roles", "member"),))
        error = rpc_error(lambda: batch_get(member, new_uuid()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def batch_delete(placement: Placement, *consumers: str):
    return placement.call(
        placement.allocations.BatchDeleteAllocations,
        pb.BatchDeleteAllocationsRequest(consumer_uuids=consumers),
    )


def test_a_batch_delete_releases_every_consumer_listed(placement):
    a = placement.provider(VCPU=8, MEMORY_MB=4096)
    b = placement.provider(VCPU=8)
    first, second, kept, unknown = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    placement.claim(first, {a.uuid: {"VCPU": 2, "MEMORY_MB": 1024}, b.uuid: {"VCPU": 1}})
    placement.claim(second, {a.uuid: {"VCPU": 3}})
    placement.claim(kept, {b.uuid: {"VCPU": 4}})

    batch_delete(placement, first, unknown, second)

    assert placement.held(first) == placement.held(second) == {}
    assert placement.held(kept) == {b.uuid: {"VCPU": 4}}
    assert placement.usages(a.uuid) == {"VCPU": 0, "MEMORY_MB": 0}
    assert placement.usages(b.uuid) == {"VCPU": 4}
    batch_delete(placement, first, second)  # a retried batch changes nothing
    assert placement.usages(b.uuid) == {"VCPU": 4}


def test_a_batch_delete_refuses_bad_ids_and_changes_nothing(placement):
    rp = placement.provider(VCPU=4)
    consumer = new_uuid()
    placement.claim(consumer, {rp.uuid: {"VCPU": 2}})
    for bad, field in (
        ([consumer, "not-a-uuid"], "consumer_uuids[1]"),
        ([consumer, consumer], "consumer_uuids"),
        ([], "consumer_uuids"),
        ([consumer] + [new_uuid() for _ in range(1000)], "consumer_uuids"),
    ):
        error = rpc_error(lambda ids=bad: batch_delete(placement, *ids))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad[:2]
        assert field in error.details()
    assert placement.held(consumer) == {rp.uuid: {"VCPU": 2}}


def test_members_cannot_delete_allocations_in_batch(mesh):
    with mesh.channel("placement") as channel:
        member = Placement(channel, metadata=(("x-stratus-roles", "member"),))
        error = rpc_error(lambda: batch_delete(member, new_uuid()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
