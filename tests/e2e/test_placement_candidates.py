"""Allocation candidates: flat hosts, traits, aggregates, nested trees, granular groups."""

from __future__ import annotations

import grpc
from stratus.placement.v1 import allocation_candidates_pb2 as pb

from tests.placement_client import new_uuid, reason, requests_of, rpc_error


def as_set(requests) -> set[frozenset]:
    """Allocation requests compared regardless of order."""
    return {
        frozenset((p, rc, n) for p, r in req.items() for rc, n in r.items()) for req in requests
    }


def hosts_in_aggregate(placement, count: int, **inventory):
    aggregate = new_uuid()
    hosts = [placement.provider(**inventory) for _ in range(count)]
    for host in hosts:
        placement.aggregates(host.uuid, aggregate)
    return aggregate, hosts


def test_flat_hosts_with_room_are_candidates(placement):
    aggregate, hosts = hosts_in_aggregate(placement, 3, VCPU=4, MEMORY_MB=4096, DISK_GB=100)
    placement.claim(new_uuid(), {hosts[1].uuid: {"VCPU": 4}})  # hosts[1] has no VCPU left
    reply = placement.find(
        resources={"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10}, member_of=[aggregate]
    )
    assert as_set(requests_of(reply)) == as_set(
        [{h.uuid: {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10}} for h in (hosts[0], hosts[2])]
    )
    summary = {s.resource_provider_uuid: s for s in reply.provider_summaries}[hosts[0].uuid]
    assert (summary.resources["VCPU"].capacity, summary.resources["VCPU"].used) == (4, 0)
    assert list(summary.aggregates) == [aggregate]


def test_traits_select_and_exclude_hosts(placement):
    aggregate, (plain, fast, slow) = hosts_in_aggregate(placement, 3, VCPU=4)
    placement.traits(fast.uuid, "HW_CPU_X86_AVX2")
    placement.traits(slow.uuid, "HW_CPU_X86_AVX2", "COMPUTE_STATUS_DISABLED")

    def hosts(**traits):
        return {
            u
            for r in requests_of(
                placement.find(resources={"VCPU": 1}, member_of=[aggregate], **traits)
            )
            for u in r
        }

    assert hosts() == {plain.uuid, fast.uuid, slow.uuid}
    assert hosts(required_traits=["HW_CPU_X86_AVX2"]) == {fast.uuid, slow.uuid}
    assert hosts(
        required_traits=["HW_CPU_X86_AVX2"], forbidden_traits=["COMPUTE_STATUS_DISABLED"]
    ) == {fast.uuid}
    assert hosts(forbidden_traits=["HW_CPU_X86_AVX2"]) == {plain.uuid}


def test_nested_trees_combine_resources_from_root_and_children(placement):
    root = placement.provider(DISK_GB=100)
    numa0 = placement.provider(parent=root.uuid, VCPU=4, MEMORY_MB=4096)
    numa1 = placement.provider(parent=root.uuid, VCPU=4, MEMORY_MB=1024)
    reply = placement.find(
        resources={"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 10}, in_tree=root.uuid
    )
    found = requests_of(reply)
    # Memory fits only on numa0; VCPU on either child; disk only on the root.
    assert as_set(found) == as_set(
        [
            {numa0.uuid: {"VCPU": 2, "MEMORY_MB": 2048}, root.uuid: {"DISK_GB": 10}},
            {numa1.uuid: {"VCPU": 2}, numa0.uuid: {"MEMORY_MB": 2048}, root.uuid: {"DISK_GB": 10}},
        ]
    )
    assert {s.resource_provider_uuid for s in reply.provider_summaries} == {
        root.uuid,
        numa0.uuid,
        numa1.uuid,
    }
    assert {s.root_uuid for s in reply.provider_summaries} == {root.uuid}
    # A candidate is a claim that succeeds as it is.
    placement.claim(new_uuid(), found[0])
    assert placement.usages(root.uuid) == {"DISK_GB": 10}


def test_granular_groups_each_come_from_one_provider(placement):
    root = placement.provider(VCPU=8)
    pf_a = placement.provider(parent=root.uuid, SRIOV_NET_VF=4)
    pf_b = placement.provider(parent=root.uuid, SRIOV_NET_VF=4)
    physnet = f"CUSTOM_PHYSNET_{new_uuid()[:6].upper()}"
    placement.traits(pf_a.uuid, physnet)

    def find(policy=pb.GROUP_POLICY_UNSPECIFIED, **group):
        groups = [
            pb.RequestGroup(suffix="1", resources={"SRIOV_NET_VF": 1}, **group),
            pb.RequestGroup(suffix="2", resources={"SRIOV_NET_VF": 1}),
        ]
        return requests_of(
            placement.find(
                resources={"VCPU": 1}, groups=groups, group_policy=policy, in_tree=root.uuid
            )
        )

    shared = find()
    assert {root.uuid: {"VCPU": 1}, pf_a.uuid: {"SRIOV_NET_VF": 2}} in shared
    assert len(shared) == 3  # a+a, b+b, a+b
    isolated = find(pb.GROUP_POLICY_ISOLATE)
    assert isolated == [
        {root.uuid: {"VCPU": 1}, pf_a.uuid: {"SRIOV_NET_VF": 1}, pf_b.uuid: {"SRIOV_NET_VF": 1}}
    ]
    on_physnet = find(pb.GROUP_POLICY_ISOLATE, required_traits=[physnet])
    assert on_physnet == isolated


def test_limit_caps_the_answer(placement):
    aggregate, _ = hosts_in_aggregate(placement, 5, VCPU=2)
    assert (
        len(requests_of(placement.find(resources={"VCPU": 1}, member_of=[aggregate], limit=2))) == 2
    )
    assert len(requests_of(placement.find(resources={"VCPU": 1}, member_of=[aggregate]))) == 5
    randomized = placement.find(
        resources={"VCPU": 1}, member_of=[aggregate], limit=3, randomize=True
    )
    assert len(requests_of(randomized)) == 3


def test_full_hosts_stop_being_candidates(placement):
    aggregate, _ = hosts_in_aggregate(placement, 1, VCPU=2)
    candidate = requests_of(placement.find(resources={"VCPU": 2}, member_of=[aggregate]))[0]
    placement.claim(new_uuid(), candidate)
    assert requests_of(placement.find(resources={"VCPU": 1}, member_of=[aggregate])) == []


def test_bad_queries_are_refused(placement):
    error = rpc_error(lambda: placement.find(resources={"VPCU": 1}))
    assert (
        error.code() == grpc.StatusCode.INVALID_ARGUMENT
        and reason(error) == "placement.unknown_resource_class"
    )
    assert reason(rpc_error(lambda: placement.find())) == "placement.empty_request"
    error = rpc_error(lambda: placement.find(resources={"VCPU": 1}, required_traits=["HW_NOPE"]))
    assert reason(error) == "placement.unknown_trait"
    error = rpc_error(
        lambda: placement.find(
            resources={"VCPU": 1},
            required_traits=["HW_CPU_X86_AVX2"],
            forbidden_traits=["HW_CPU_X86_AVX2"],
        )
    )
    assert reason(error) == "placement.conflicting_traits"
    assert (
        rpc_error(lambda: placement.find(resources={"VCPU": 1}, in_tree=new_uuid())).code()
        == grpc.StatusCode.NOT_FOUND
    )
