"""The reconciler matches placement with the records: leaks released, losses healed,
and consumers that were never servers left alone."""

from __future__ import annotations

import uuid

from stratus.placement.v1 import allocations_pb2 as alloc_pb

from tests.compute_client import create, fake_flavor, member_of, wait
from tests.hostagent_client import wait_for
from tests.placement_client import Placement


def claim(placement: Placement, consumer: str, provider: str) -> None:
    placement.call(
        placement.allocations.PutAllocations,
        alloc_pb.PutAllocationsRequest(
            consumer_uuid=consumer,
            project_id="p",
            user_id="u",
            allocations=[
                alloc_pb.Allocation(
                    resource_provider_uuid=provider, resources={"VCPU": 1, "MEMORY_MB": 256}
                )
            ],
        ),
    )


def test_leaked_allocations_are_released_and_lost_ones_claimed_again(fault_mesh):
    with fault_mesh.rest(member_of()) as client, fault_mesh.channel("placement") as channel:
        placement = Placement(channel)
        flavor = fake_flavor(fault_mesh)
        kept, gone = create(client, flavor, min_count=2, max_count=2)
        kept, gone = wait(client, kept["id"]), wait(client, gone["id"])
        (provider,) = placement.held(kept["id"])
        client.delete(f"/v1/servers/{gone['id']}")
        wait(client, gone["id"], until=lambda s: s["status"] == "DELETED")

        claim(placement, gone["id"], provider)  # a delete that lost its release
        stranger = str(uuid.uuid4())
        claim(placement, stranger, provider)  # someone else's consumer
        placement.call(  # an active server whose allocation went missing
            placement.allocations.DeleteAllocations,
            alloc_pb.DeleteAllocationsRequest(consumer_uuid=kept["id"]),
        )

        took, _ = wait_for(
            lambda: not placement.held(gone["id"]) and placement.held(kept["id"]),
            15,
            "the reconciler's repairs",
        )
        print(f"\nleak released and loss healed {took:.2f}s later")
        assert placement.held(kept["id"]) == {provider: {"VCPU": 1, "MEMORY_MB": 256}}
        assert placement.held(stranger)  # never ours: left alone
        placement.call(
            placement.allocations.DeleteAllocations,
            alloc_pb.DeleteAllocationsRequest(consumer_uuid=stranger),
        )
