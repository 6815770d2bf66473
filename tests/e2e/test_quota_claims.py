"""Quota claims and releases over gRPC, as Stratus services make them.

Every test runs twice: quota on SQLite, and on PostgreSQL.
"""

from __future__ import annotations

import grpc

from tests.placement_client import reason, rpc_error
from tests.quota_client import Quota, new_project, new_uuid


def test_a_claim_adds_to_usage_and_its_release_gives_back_exactly_that(quota):
    project = new_project()
    server_a, server_b = new_uuid(), new_uuid()
    claimed = quota.claim(server_a, project, instances=1, cores=2, ram_mb=4096)
    assert claimed.consumer_id == server_a and claimed.project_id == project
    assert dict(claimed.deltas) == {"instances": 1, "cores": 2, "ram_mb": 4096}
    quota.claim(server_b, project, instances=1, cores=4, ram_mb=8192)
    assert quota.in_use(project) == {"instances": 2, "cores": 6, "ram_mb": 12288}

    quota.release(server_a)
    assert quota.in_use(project) == {"instances": 1, "cores": 4, "ram_mb": 8192}
    quota.release(server_b)
    assert quota.in_use(project) == {}


def test_a_repeated_claim_counts_once_and_answers_the_same(quota):
    project = new_project()
    server = new_uuid()
    first = quota.claim(server, project, instances=1, cores=2)
    again = quota.claim(server, project, instances=1, cores=2)
    assert again == first  # create_time included: it is the first claim's answer
    assert quota.in_use(project) == {"instances": 1, "cores": 2}


def test_a_different_claim_for_a_held_consumer_is_a_conflict_not_a_replace(quota):
    project = new_project()
    server = new_uuid()
    quota.claim(server, project, instances=1, cores=2)
    bigger = rpc_error(lambda: quota.claim(server, project, instances=1, cores=4))
    assert bigger.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(bigger) == "quota.claim_exists"
    assert "cores 2, instances 1" in bigger.details()
    other_project = rpc_error(lambda: quota.claim(server, new_project(), instances=1, cores=2))
    assert reason(other_project) == "quota.claim_exists"
    assert quota.in_use(project) == {"instances": 1, "cores": 2}

    # Release first, then the new claim takes effect.
    quota.release(server)
    quota.claim(server, project, instances=1, cores=4)
    assert quota.in_use(project) == {"instances": 1, "cores": 4}


def test_releasing_twice_or_an_unknown_consumer_succeeds(quota):
    project = new_project()
    server = new_uuid()
    quota.claim(server, project, cores=3)
    quota.release(server)
    quota.release(server)
    quota.release(new_uuid())
    assert quota.in_use(project) == {}


def test_a_batch_release_gives_back_each_consumer_listed(quota):
    project = new_project()
    first, second, kept = new_uuid(), new_uuid(), new_uuid()
    quota.claim(first, project, instances=1, cores=2)
    quota.claim(second, project, instances=1, cores=4)
    quota.claim(kept, project, instances=1, cores=1)

    quota.release_batch([first, new_uuid(), second])
    assert quota.in_use(project) == {"instances": 1, "cores": 1}
    quota.release_batch([first, second])  # a retried batch changes nothing
    assert quota.in_use(project) == {"instances": 1, "cores": 1}


def test_a_batch_release_refuses_bad_ids_and_changes_nothing(quota):
    project = new_project()
    server = new_uuid()
    quota.claim(server, project, cores=3)
    for bad, field in (
        ([server, "not-a-uuid"], "consumer_ids[1]"),
        ([server, server], "consumer_ids"),
        ([], "consumer_ids"),
        ([server] + [new_uuid() for _ in range(1000)], "consumer_ids"),
    ):
        error = rpc_error(lambda ids=bad: quota.release_batch(ids))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad[:2]
        assert field in error.details()
    assert quota.in_use(project) == {"cores": 3}


def test_a_claim_is_all_or_nothing_across_resources(quota):
    project = new_project()
    quota.set_limit(project, "ram_mb", 4096)
    quota.claim(new_uuid(), project, instances=1, cores=1, ram_mb=4096)
    refused = rpc_error(lambda: quota.claim(new_uuid(), project, instances=1, cores=1, ram_mb=1))
    assert reason(refused) == "quota.exceeded"
    # instances and cores sort before ram_mb and fitted: they were rolled back.
    assert quota.in_use(project) == {"instances": 1, "cores": 1, "ram_mb": 4096}


def test_a_refused_claim_leaves_no_claim_behind(quota):
    project = new_project()
    quota.set_limit(project, "cores", 2)
    server = new_uuid()
    rpc_error(lambda: quota.claim(server, project, cores=3))
    # Same consumer, now within the limit: a fresh claim, not a conflict.
    quota.claim(server, project, cores=2)
    assert quota.in_use(project) == {"cores": 2}


def test_server_group_members_are_limited_per_group(quota):
    project = new_project()
    quota.set_limit(project, "server_group_members", 2)
    group_a, group_b = new_uuid(), new_uuid()
    members_a = [new_uuid(), new_uuid()]
    for member in members_a:
        quota.claim(member, project, server_group_id=group_a, instances=1, server_group_members=1)
    # group_b has room of its own.
    quota.claim(new_uuid(), project, server_group_id=group_b, instances=1, server_group_members=1)
    full = rpc_error(
        lambda: quota.claim(
            new_uuid(), project, server_group_id=group_a, instances=1, server_group_members=1
        )
    )
    assert reason(full) == "quota.exceeded"
    assert f"server_group_members of server group {group_a}: limit 2, in use 2" in full.details()
    # in_use is the fullest group's member count.
    assert quota.in_use(project) == {"instances": 3, "server_group_members": 2}
    quota.release(members_a[0])
    assert quota.in_use(project)["server_group_members"] == 1  # both groups hold 1
    quota.claim(new_uuid(), project, server_group_id=group_a, instances=1, server_group_members=1)


def test_only_services_and_admins_claim_and_release(quota):
    member = Quota(quota.channel, metadata=(("x-stratus-roles", "member"),))
    denied = rpc_error(lambda: member.claim(new_uuid(), new_project(), cores=1))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(denied) == "stratus.role_required"
    assert reason(rpc_error(lambda: member.release(new_uuid()))) == "stratus.role_required"
    denied = rpc_error(lambda: member.release_batch([new_uuid()]))
    assert reason(denied) == "stratus.role_required"
    admin = Quota(quota.channel, metadata=(("x-stratus-roles", "admin"),))
    project = new_project()
    admin.claim(new_uuid(), project, cores=1)
    assert quota.in_use(project) == {"cores": 1}
