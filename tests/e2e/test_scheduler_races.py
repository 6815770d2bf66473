"""Two scheduler replicas, one placement, many requests at once: nothing over-committed,
nothing lost, and anti-affinity holds when two members are scheduled at the same moment.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from stratus.scheduler.v1 import scheduler_pb2 as pb

from tests.placement_client import Placement, new_uuid, reason
from tests.scheduler_client import SimulatedHosts, scheduler, select, select_request


@pytest.fixture(scope="module")
def two_schedulers(mesh):
    """The mesh's scheduler and a second replica, shared by this module's tests."""
    return [mesh.layout.address("scheduler"), mesh.start_replica("scheduler")]


@pytest.fixture
def hosts(mesh):
    with mesh.channel("placement") as channel:
        simulated = SimulatedHosts(Placement(channel), mesh.layout.address("etcd"))
        yield simulated
        simulated.set_dead(simulated.hosts)  # no stale live hosts for other tests


def run_concurrently(addresses, requests):
    """Send each request to the replicas in turn, all at once; (reply | error) per request."""
    channels = [grpc.insecure_channel(a) for a in addresses]
    stubs = [scheduler(c) for c in channels]

    def send(i_request):
        i, request = i_request
        try:
            return select(stubs[i % len(stubs)], request)
        except grpc.RpcError as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(send, enumerate(requests)))
    finally:
        for channel in channels:
            channel.close()


def test_concurrent_requests_never_overcommit_and_none_is_lost(two_schedulers, hosts):
    made = hosts.add(10, vcpus=3)  # room for exactly 30 instances of 1 VCPU
    requests = [select_request(hosts) for _ in range(40)]
    results = run_concurrently(two_schedulers, requests)

    placed = [r for r in results if isinstance(r, pb.SelectDestinationsResponse)]
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert {reason(e) for e in refused} <= {"compute.no_valid_host"}, [e.details() for e in refused]
    assert (len(placed), len(refused)) == (30, 10), [e.details() for e in refused]
    assert all(hosts.usage(h)["VCPU"] == 3 for h in made)
    for request, result in zip(requests, results, strict=True):
        held = hosts.placement.held(request.instance_ids[0])
        if isinstance(result, pb.SelectDestinationsResponse):
            assert list(held) == [result.selections[0].destination.resource_provider_uuid]
        else:
            assert held == {}


def test_anti_affinity_holds_when_members_arrive_together(two_schedulers, hosts):
    hosts.add(8)
    group = pb.ServerGroup(id=new_uuid(), policy=pb.SERVER_GROUP_POLICY_ANTI_AFFINITY)
    requests = [select_request(hosts, server_group=group) for _ in range(10)]
    results = run_concurrently(two_schedulers, requests)

    placed = [
        r.selections[0].destination.host
        for r in results
        if isinstance(r, pb.SelectDestinationsResponse)
    ]
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(placed) == 8 and len(set(placed)) == 8
    assert len(refused) == 2
    assert all("removed by anti-affinity" in e.details() for e in refused)
