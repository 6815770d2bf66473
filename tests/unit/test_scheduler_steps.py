"""Filters and weighers as pure functions of a host and a request."""

from __future__ import annotations

import uuid

import pytest

from services.common.config import SchedulerSection
from services.scheduler.filters import (
    FILTERS,
    affinity,
    anti_affinity,
    availability_zone,
    host_alive,
    ignore_hosts,
    resources_fit,
)
from services.scheduler.host_state import HostState
from services.scheduler.request import GroupPolicy, Placing, SchedulingRequest, ServerGroup
from services.scheduler.weighers import weigh


def host(name="h1", free_ram=8192, free_vcpu=8, zone="default", alive=True) -> HostState:
    provider = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    live = {"host": name, "address": "a", "availability_zone": zone} if alive else None
    return HostState(
        provider, name, {provider: {"VCPU": 1}}, {"VCPU": free_vcpu, "MEMORY_MB": free_ram}, live
    )


def placing(policy=None, members=(), **request) -> Placing:
    group = ServerGroup(str(uuid.uuid4()), policy) if policy else None
    spec = SchedulingRequest(
        instance_ids=("i",),
        project_id="p",
        user_id="u",
        resources=request.pop("resources", {"VCPU": 1, "MEMORY_MB": 512}),
        server_group=group,
        **request,
    )
    return Placing(spec, "i", {host(m).provider_uuid for m in members})


def test_every_filter_has_a_name_and_a_reason_for_people():
    assert len({f.name for f in FILTERS}) == len(FILTERS)
    assert all(f.reason.startswith("host(s)") for f in FILTERS)


@pytest.mark.parametrize(
    ("step", "candidate", "request_", "passes"),
    [
        (host_alive, host(alive=False), placing(), False),
        (host_alive, host(), placing(), True),
        (ignore_hosts, host("h1"), placing(ignore_hosts=frozenset({"h1"})), False),
        (availability_zone, host(zone="east"), placing(availability_zone="west"), False),
        (availability_zone, host(zone="east"), placing(availability_zone=""), True),
        (affinity, host("h2"), placing(GroupPolicy.AFFINITY, members=["h1"]), False),
        (affinity, host("h2"), placing(GroupPolicy.AFFINITY), True),  # the first member
        (anti_affinity, host("h1"), placing(GroupPolicy.ANTI_AFFINITY, members=["h1"]), False),
        (anti_affinity, host("h1"), placing(GroupPolicy.SOFT_ANTI_AFFINITY, members=["h1"]), True),
        (resources_fit, host(free_vcpu=1), placing(resources={"VCPU": 2}), False),
    ],
)
def test_filters(step, candidate, request_, passes):
    assert step.passes(candidate, request_) is passes


def test_spread_prefers_free_room_and_pack_prefers_full_hosts():
    hosts = [host("small", free_ram=1024, free_vcpu=1), host("big", free_ram=65536, free_vcpu=32)]
    spread = SchedulerSection()
    pack = SchedulerSection(ram_weight_multiplier=-1, vcpu_weight_multiplier=-1)
    assert [h.name for h in weigh(hosts, placing(), spread)] == ["big", "small"]
    assert [h.name for h in weigh(hosts, placing(), pack)] == ["small", "big"]


def test_soft_group_policies_outweigh_a_little_free_room():
    with_member, empty = host("m", free_ram=8000), host("e", free_ram=8192)
    soft = placing(GroupPolicy.SOFT_AFFINITY, members=["m"])
    soft_anti = placing(GroupPolicy.SOFT_ANTI_AFFINITY, members=["m"])
    config = SchedulerSection(ram_weight_multiplier=0.5, vcpu_weight_multiplier=0)
    assert weigh([empty, with_member], soft, config)[0].name == "m"
    assert weigh([with_member, empty], soft_anti, config)[0].name == "e"


def test_claims_made_by_the_request_count_against_the_host():
    h = host(free_vcpu=2)
    h.take({"VCPU": 2})
    assert not resources_fit.passes(h, placing(resources={"VCPU": 1}))
