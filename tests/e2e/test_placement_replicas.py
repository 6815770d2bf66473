"""Two placement replicas on one database: each answers candidates from its
own capacity index, and sees the other's writes within its refresh period."""

from __future__ import annotations

import time

import grpc
import pytest
from stratus.placement.v1 import allocations_pb2 as alloc_pb

from services.placement.capacity_index.refresh import REFRESH_INTERVAL_S
from tests.placement_client import Placement, new_uuid, requests_of

# The refresh period, plus room for a loaded machine.
WITHIN_S = REFRESH_INTERVAL_S + 5


@pytest.fixture(scope="module")
def other_replica(mesh):
    return mesh.start_replica("placement")


@pytest.fixture
def two(mesh, other_replica):
    """(this replica, the other one): clients of two processes on one database."""
    with mesh.channel("placement") as here, grpc.insecure_channel(other_replica) as there:
        yield Placement(here), Placement(there)


def hosts_found(placement: Placement, aggregate: str, **resources) -> set[str]:
    reply = placement.find(resources=resources or {"VCPU": 1}, member_of=[aggregate])
    return {u for r in requests_of(reply) for u in r}


def eventually(check, within_s: float = WITHIN_S):
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not seen within the refresh period"
        time.sleep(0.1)


def test_a_claim_through_the_other_replica_reaches_this_ones_candidates(two):
    here, there = two
    aggregate = new_uuid()
    host = here.provider(VCPU=2)
    here.aggregates(host.uuid, aggregate)
    assert hosts_found(here, aggregate) == {host.uuid}

    consumer = new_uuid()
    there.claim(consumer, {host.uuid: {"VCPU": 2}})
    eventually(lambda: hosts_found(here, aggregate) == set())

    there.call(
        there.allocations.DeleteAllocations,
        alloc_pb.DeleteAllocationsRequest(consumer_uuid=consumer),
    )
    eventually(lambda: hosts_found(here, aggregate) == {host.uuid})


def test_a_provider_created_on_the_other_replica_becomes_a_candidate_here(two):
    here, there = two
    aggregate = new_uuid()
    host = there.provider(VCPU=4)
    there.aggregates(host.uuid, aggregate)
    # in_tree names it: read at once, no waiting for the refresh.
    reply = here.find(resources={"VCPU": 1}, in_tree=host.uuid)
    assert {u for r in requests_of(reply) for u in r} == {host.uuid}
    eventually(lambda: hosts_found(here, aggregate) == {host.uuid})


def test_a_stale_candidate_is_refused_by_the_claim_never_overcommitted(two):
    here, there = two
    aggregate = new_uuid()
    host = here.provider(VCPU=1)
    here.aggregates(host.uuid, aggregate)
    there.claim(new_uuid(), {host.uuid: {"VCPU": 1}})
    # Whatever this replica's index still says, the database decides.
    with pytest.raises(grpc.RpcError) as refused:
        here.claim(new_uuid(), {host.uuid: {"VCPU": 1}})
    assert refused.value.code() == grpc.StatusCode.ABORTED
    assert here.usages(host.uuid) == {"VCPU": 1}
