"""Servers end to end through the REST edge: build, actions, delete, quota, faults.

Real Envoy, api_gateway, quota, scheduler, placement, etcd and host agents
(the fake driver here; tests/e2e/test_servers_libvirt.py covers libvirt).
"""

from __future__ import annotations

import pytest

from tests.compute_client import create, fake_flavor, member_of, unlimited, wait
from tests.placement_client import Placement


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


def test_a_server_boots_to_active_on_a_live_host(mesh):
    me = member_of()
    with mesh.rest(me) as client:
        (server,) = create(client, fake_flavor(mesh), metadata={"role": "web"})
        assert (server["status"], server["task_state"]) == ("BUILD", "scheduling")
        active = wait(client, server["id"])
    assert (active["status"], active["power_state"], active["task_state"]) == (
        "ACTIVE",
        "RUNNING",
        "",
    )
    assert active["host"] in {"fake-1", "fake-2"} and active["host_status"] == "UP"
    assert active["metadata"] == {"role": "web"}
    assert active["project_id"] == me["x-stratus-project"]


def test_reboot_stop_and_start_change_the_power_state_on_the_host(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh))
        wait(client, server["id"])
        stopped = client.post(f"/v1/servers/{server['id']}:stop", json={})
        assert stopped.json()["task_state"] == "powering-off"
        assert wait(client, server["id"])["power_state"] == "SHUTDOWN"
        assert wait(client, server["id"])["status"] == "SHUTOFF"
        again = client.post(f"/v1/servers/{server['id']}:stop", json={})
        assert again.status_code == 409 and again.json()["error"]["reason"] == (
            "compute.invalid_state"
        )
        client.post(f"/v1/servers/{server['id']}:start", json={})
        assert wait(client, server["id"])["status"] == "ACTIVE"
        rebooting = client.post(f"/v1/servers/{server['id']}:reboot", json={"type": "HARD"})
        assert rebooting.json()["status"] == "REBOOT"
        assert wait(client, server["id"])["power_state"] == "RUNNING"
        actions = client.get(f"/v1/servers/{server['id']}/actions").json()["actions"]
    assert [(a["action"], a["result"]) for a in actions] == [
        ("create", "success"),
        ("stop", "success"),
        ("start", "success"),
        ("reboot", "success"),
    ]
    assert all(a["user_id"] == "alice" and a["finish_time"] for a in actions)


def test_a_multi_create_of_twenty(sqlite_mesh):
    me = member_of()
    unlimited(sqlite_mesh, me["x-stratus-project"], "instances", "cores", "ram_mb")
    with sqlite_mesh.rest(me) as client:
        servers = create(client, fake_flavor(sqlite_mesh), name="batch", min_count=20, max_count=20)
        assert sorted(s["name"] for s in servers) == sorted(f"batch-{i}" for i in range(1, 21))
        settled = [wait(client, s["id"]) for s in servers]
    assert {s["status"] for s in settled} == {"ACTIVE"}


def test_over_quota_is_a_clear_429_and_leaves_nothing(sqlite_mesh):
    me = member_of()
    with sqlite_mesh.rest(me) as client:
        reply = client.post(
            "/v1/servers",
            json={
                "server": {
                    "name": "big",
                    "flavor": fake_flavor(sqlite_mesh),
                    "image_ref": "cirros",
                },
                "min_count": 11,
                "max_count": 11,
            },
        )
        assert reply.status_code == 429
        error = reply.json()["error"]
        assert error["reason"] == "quota.exceeded"
        assert "instances" in error["message"] and "limit 10" in error["message"]
        assert client.get("/v1/servers").json().get("servers", []) == []
        limits = client.get("/v1/limits").json()["limits"]
    assert limits["instances"]["in_use"] == 0 and limits["instances"]["limit"] == 10


def test_min_count_takes_what_quota_allows(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        servers = create(client, fake_flavor(sqlite_mesh), min_count=2, max_count=15)
    assert len(servers) == 10  # the default instances limit


def test_no_valid_host_is_an_error_with_a_fault_and_delete_leaves_nothing(sqlite_mesh, placement):
    me = member_of()
    unlimited(sqlite_mesh, me["x-stratus-project"], "cores")
    with sqlite_mesh.rest(me) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh, vcpus=500, ram_mb=256))
        failed = wait(client, server["id"])
        assert failed["status"] == "ERROR"
        assert failed["fault"]["code"] == "compute.no_valid_host"
        assert "placement found no candidate" in failed["fault"]["message"]
        # An ERROR server still holds its quota until it is deleted, as in Nova.
        assert client.get("/v1/limits").json()["limits"]["cores"]["in_use"] == 500
        deleted = client.delete(f"/v1/servers/{server['id']}")
        assert deleted.status_code == 200
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
        limits = client.get("/v1/limits").json()["limits"]
    assert limits["instances"]["in_use"] == 0 and limits["cores"]["in_use"] == 0
    assert placement.held(server["id"]) == {}


def test_delete_destroys_on_the_host_and_gives_everything_back(sqlite_mesh, placement):
    me = member_of()
    with sqlite_mesh.rest(me) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh))
        active = wait(client, server["id"])
        assert placement.held(server["id"])
        client.delete(f"/v1/servers/{server['id']}")
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
        assert client.get("/v1/servers").json().get("servers", []) == []
        listed = client.get("/v1/servers", params={"status": "DELETED"}).json()["servers"]
        assert [s["id"] for s in listed] == [server["id"]]
        assert client.get("/v1/limits").json()["limits"]["instances"]["in_use"] == 0
    assert placement.held(server["id"]) == {}
    assert active["host"]


@pytest.mark.parametrize(("policy", "hosts"), [("affinity", 1), ("anti-affinity", 2)])
def test_server_groups_pack_or_spread(sqlite_mesh, policy, hosts):
    me = member_of()
    with sqlite_mesh.rest(me) as client:
        group = client.post("/v1/server_groups", json={"name": "g", "policy": policy}).json()
        servers = create(
            client,
            fake_flavor(sqlite_mesh),
            min_count=2,
            max_count=2,
            server_group_id=group["id"],
        )
        placed = [wait(client, s["id"]) for s in servers]
        assert {s["status"] for s in placed} == {"ACTIVE"}
        assert len({s["host"] for s in placed}) == hosts
        members = client.get(f"/v1/server_groups/{group['id']}").json()["members"]
        assert sorted(members) == sorted(s["id"] for s in servers)
        if policy == "anti-affinity":  # two fake hosts: a third member has nowhere to go
            (third,) = create(client, fake_flavor(sqlite_mesh), server_group_id=group["id"])
            refused = wait(client, third["id"])
            assert refused["status"] == "ERROR"
            assert "removed by anti-affinity" in refused["fault"]["message"]
