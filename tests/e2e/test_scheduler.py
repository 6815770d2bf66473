"""Choosing hosts: claims, alternates, filters, and a no-valid-host that says why.

Real scheduler, placement and etcd; hosts are simulated (tests/scheduler_client.py).
"""

from __future__ import annotations

import grpc
import pytest
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.scheduler.v1 import scheduler_pb2 as pb

from services.common.status_details import from_status
from tests.placement_client import SERVICE, Placement, new_uuid, reason
from tests.scheduler_client import SimulatedHosts, scheduler, select, select_request


@pytest.fixture
def hosts(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        simulated = SimulatedHosts(Placement(channel), sqlite_mesh.layout.address("etcd"))
        yield simulated
        simulated.set_dead(simulated.hosts)  # no stale live hosts for other tests


@pytest.fixture
def stub(sqlite_mesh):
    with sqlite_mesh.channel("scheduler") as channel:
        yield scheduler(channel)


def claimed_provider(hosts: SimulatedHosts, instance_id: str) -> str:
    allocations = hosts.placement.held(instance_id)
    return next(iter(allocations))


def test_a_chosen_host_is_claimed_and_comes_with_alternates(hosts, stub):
    hosts.add(5)
    request = select_request(hosts)
    (selection,) = select(stub, request).selections
    chosen = selection.destination
    assert selection.instance_id == request.instance_ids[0]
    assert chosen.host in {h.name for h in hosts.hosts}
    assert chosen.address == "127.0.0.1:1"
    assert claimed_provider(hosts, selection.instance_id) == chosen.resource_provider_uuid
    alternates = [a.host for a in selection.alternates]
    assert len(alternates) == 3 and chosen.host not in alternates
    assert all(a.allocations for a in selection.alternates)


def test_a_retried_request_keeps_its_claim(hosts, stub):
    hosts.add(4)
    request = select_request(hosts)
    first = select(stub, request).selections[0].destination
    again = select(stub, request).selections[0].destination
    assert again.resource_provider_uuid == first.resource_provider_uuid
    used = sum(hosts.usage(h).get("VCPU", 0) for h in hosts.hosts)
    assert used == 1


def test_a_multi_create_fills_hosts_without_overcommitting_them(hosts, stub):
    hosts.add(3, vcpus=2)  # room for 6 instances of 1 VCPU
    reply = select(stub, select_request(hosts, count=6))
    assert len(reply.selections) == 6
    assert all(hosts.usage(h)["VCPU"] == 2 for h in hosts.hosts)


def test_a_multi_create_that_cannot_fit_keeps_nothing(hosts, stub):
    hosts.add(2, vcpus=2)
    request = select_request(hosts, count=5)
    with pytest.raises(grpc.RpcError) as refused:
        select(stub, request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(refused.value) == "compute.no_valid_host"
    assert all(not hosts.placement.held(i) for i in request.instance_ids)
    assert all(not hosts.usage(h).get("VCPU") for h in hosts.hosts)


def test_no_valid_host_says_how_many_hosts_each_step_removed(hosts, stub):
    alive = hosts.add(3)
    dead = hosts.add(2, alive=False)
    request = select_request(hosts, ignore_hosts=[alive[0].name])
    request.availability_zone = "elsewhere"
    with pytest.raises(grpc.RpcError) as refused:
        select(stub, request)
    message = refused.value.details()
    assert "5 candidates" in message
    assert f"{len(dead)} removed by host-alive" in message
    assert "1 removed by ignore-hosts" in message
    assert "2 removed by availability-zone" in message


def test_nothing_with_room_says_so(hosts, stub):
    hosts.add(2, vcpus=1)
    with pytest.raises(grpc.RpcError) as refused:
        select(stub, select_request(hosts, resources={"VCPU": 8}))
    assert "placement found no candidate" in refused.value.details()
    assert "VCPU 8" in refused.value.details()


def test_availability_zone_and_hosts_to_avoid_are_honoured(hosts, stub):
    east = hosts.add(3, zone="east")
    hosts.add(3, zone="west")
    avoid = east[0].name
    for _ in range(5):
        request = select_request(hosts, availability_zone="east", ignore_hosts=[avoid])
        chosen = select(stub, request).selections[0].destination.host
        assert chosen in {h.name for h in east[1:]}


def test_a_dead_host_gets_nothing(hosts, stub):
    live, dead = hosts.add(1), hosts.add(1)
    hosts.set_dead(dead)
    for _ in range(3):
        chosen = select(stub, select_request(hosts)).selections[0].destination.host
        assert chosen == live[0].name


@pytest.mark.parametrize("policy", ["affinity", "anti-affinity"])
def test_hard_group_policies_hold_across_requests(hosts, stub, policy):
    hosts.add(4)
    group = pb.ServerGroup(
        id=new_uuid(),
        policy=pb.SERVER_GROUP_POLICY_AFFINITY
        if policy == "affinity"
        else pb.SERVER_GROUP_POLICY_ANTI_AFFINITY,
    )
    first = select(stub, select_request(hosts, count=2, server_group=group))
    second = select(stub, select_request(hosts, count=2, server_group=group))
    placed = [s.destination.host for r in (first, second) for s in r.selections]
    if policy == "affinity":
        assert len(set(placed)) == 1
    else:
        assert len(set(placed)) == 4
        with pytest.raises(grpc.RpcError) as full:
            select(stub, select_request(hosts, server_group=group))
        assert "4 removed by anti-affinity" in full.value.details()


def test_a_member_whose_claim_is_released_no_longer_holds_its_host(hosts, stub):
    hosts.add(3)
    group = pb.ServerGroup(id=new_uuid(), policy=pb.SERVER_GROUP_POLICY_ANTI_AFFINITY)
    placed = select(stub, select_request(hosts, count=3, server_group=group)).selections
    with pytest.raises(grpc.RpcError):
        select(stub, select_request(hosts, server_group=group))
    deleted = placed[1]
    hosts.placement.call(
        hosts.placement.allocations.DeleteAllocations,
        alloc_pb.DeleteAllocationsRequest(consumer_uuid=deleted.instance_id),
    )
    (replacement,) = select(stub, select_request(hosts, server_group=group)).selections
    assert replacement.destination.host == deleted.destination.host


def test_only_services_and_admins_may_schedule(hosts, stub):
    member = (("x-stratus-roles", "member"), ("x-stratus-project", "p"))
    with pytest.raises(grpc.RpcError) as denied:
        select(stub, select_request(hosts), metadata=member)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_retried_multi_create_keeps_its_claims(hosts, stub):
    hosts.add(4, vcpus=4)
    request = select_request(hosts, count=3)
    first = {s.instance_id: s.destination.host for s in select(stub, request).selections}
    again = {s.instance_id: s.destination.host for s in select(stub, request).selections}
    assert again == first
    assert sum(hosts.usage(h).get("VCPU", 0) for h in hosts.hosts) == 3


def test_a_batch_decides_each_request_alone(hosts, stub):
    hosts.add(2, vcpus=2)  # room for 4 instances of 1 VCPU
    fits, too_many, wrong_zone = (
        select_request(hosts, count=3),
        select_request(hosts, count=3),  # only 1 is left once the first is placed
        select_request(hosts, availability_zone="elsewhere"),
    )
    reply = stub.BatchSelectDestinations(
        pb.BatchSelectDestinationsRequest(requests=[fits, too_many, wrong_zone]),
        metadata=SERVICE,
        timeout=30,
    )
    placed, refused, elsewhere = reply.results
    assert [s.instance_id for s in placed.response.selections] == list(fits.instance_ids)
    assert refused.error.code == elsewhere.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert from_status(refused.error).code == from_status(elsewhere.error).code
    assert from_status(refused.error).code == "compute.no_valid_host"
    assert "removed by availability-zone" in elsewhere.error.message
    assert all(not hosts.placement.held(i) for i in too_many.instance_ids)
    assert sum(hosts.usage(h).get("VCPU", 0) for h in hosts.hosts) == 3
