"""Servers and their hosts: libvirt builds, zones, a host that dies, power changes outside.

Real agents: the mesh's libvirt agent (libvirt's test driver) and agents
started here in their own availability zone, so a test knows where its
server lands and can kill that host without touching anyone else's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest
from stratus.compute.v1 import host_events_pb2, host_events_pb2_grpc, power_state_pb2

from deploy.local.mesh import process_env, start_service
from tests.compute_client import create, fake_flavor, libvirt_flavor, member_of, wait
from tests.drivers.libvirt_host import require_libvirt
from tests.hostagent_client import wait_for
from tests.placement_client import SERVICE, Placement


@pytest.fixture
def zone_agent(sqlite_mesh, tmp_path):
    """Start a fake host alone in a new zone (2 s liveness TTL); (host, zone, process)."""
    started = []

    def start(host: str = "", zone: str = "", **extra_env: str):
        host = host or f"zoned-{uuid.uuid4().hex[:6]}"
        zone = zone or f"az-{uuid.uuid4().hex[:6]}"
        env = process_env(sqlite_mesh.layout) | {
            "STRATUS_HOSTAGENT__HOST": host,
            "STRATUS_HOSTAGENT__AVAILABILITY_ZONE": zone,
            "STRATUS_HOSTAGENT__LIVENESS_TTL_S": "2",
            **extra_env,
        }
        with open(tmp_path / f"{host}.log", "ab") as log:
            proc, _ = start_service("hostagent", env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return host, zone, proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


def test_a_server_boots_on_libvirt(sqlite_mesh):
    require_libvirt()
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, libvirt_flavor(sqlite_mesh))
        active = wait(client, server["id"])
        assert (active["status"], active["host"], active["power_state"]) == (
            "ACTIVE",
            "libvirt-1",
            "RUNNING",
        )
        client.post(f"/v1/servers/{server['id']}:stop", json={})
        assert wait(client, server["id"])["power_state"] == "SHUTDOWN"
        client.delete(f"/v1/servers/{server['id']}")
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")


def test_a_dead_host_shows_down_gets_no_new_servers_and_comes_back_with_them(
    sqlite_mesh, zone_agent, placement
):
    host, zone, agent = zone_agent()
    with sqlite_mesh.rest(member_of()) as client:
        flavor = fake_flavor(sqlite_mesh)
        wait_for(lambda: _host_up(sqlite_mesh, host), 15, f"{host} registered")
        (server,) = create(client, flavor, availability_zone=zone)
        active = wait(client, server["id"])
        assert (active["host"], active["host_status"]) == (host, "UP")

        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        took, _ = wait_for(
            lambda: client.get(f"/v1/servers/{server['id']}").json()["host_status"] == "DOWN",
            10,
            "host DOWN",
        )
        print(f"\nserver's host shown DOWN {took:.2f}s after SIGKILL (TTL 2 s)")
        refused = client.post(f"/v1/servers/{server['id']}:stop", json={})
        assert refused.status_code == 409
        assert refused.json()["error"]["reason"] == "compute.host_down"
        (avoided,) = create(client, flavor, name="avoided", availability_zone=zone)
        fault = wait(client, avoided["id"])["fault"]["message"]
        assert "removed by host-alive" in fault  # new boots avoid the dead host

        # The host comes back (same name, same state): its server with it.
        _, _, agent = zone_agent(host=host, zone=zone)
        took, _ = wait_for(
            lambda: client.get(f"/v1/servers/{server['id']}").json()["host_status"] == "UP",
            15,
            "host UP",
        )
        print(f"server's host UP again {took:.2f}s after the agent restarted")
        client.post(f"/v1/servers/{server['id']}:stop", json={})
        assert wait(client, server["id"])["power_state"] == "SHUTDOWN"
        client.post(f"/v1/servers/{server['id']}:start", json={})
        assert wait(client, server["id"])["status"] == "ACTIVE"
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        wait_for(
            lambda: client.get(f"/v1/servers/{server['id']}").json()["host_status"] == "DOWN",
            10,
            "host DOWN again",
        )

        client.delete(f"/v1/servers/{server['id']}")
        gone = wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
        assert gone["status"] == "DELETED"
        actions = client.get(f"/v1/servers/{server['id']}/actions").json()["actions"]
    assert "removed here only" in actions[-1]["message"]
    assert placement.held(server["id"]) == {}


def test_an_action_the_hosts_driver_cannot_do_is_refused_and_changes_nothing(
    sqlite_mesh, zone_agent
):
    host, zone, _ = zone_agent(STRATUS_HOSTAGENT__FAKE__WITHOUT="power_off,reboot_soft")
    with sqlite_mesh.rest(member_of()) as client:
        flavor = fake_flavor(sqlite_mesh)
        wait_for(lambda: _host_up(sqlite_mesh, host), 15, f"{host} registered")
        (server,) = create(client, flavor, availability_zone=zone)
        wait(client, server["id"])
        for action, body in ((":stop", {}), (":reboot", {"type": "SOFT"})):
            refused = client.post(f"/v1/servers/{server['id']}{action}", json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["reason"] == "compute.unsupported_operation"
        hard = client.post(f"/v1/servers/{server['id']}:reboot", json={"type": "HARD"})
        assert hard.status_code == 200
        after = wait(client, server["id"])
    assert (after["status"], after["power_state"]) == ("ACTIVE", "RUNNING")


def test_a_power_change_reported_by_the_host_shows_on_the_server(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh))
        active = wait(client, server["id"])
        with sqlite_mesh.channel("api_gateway") as channel:
            reply = host_events_pb2_grpc.HostEventServiceStub(channel).ReportPowerStates(
                host_events_pb2.ReportPowerStatesRequest(
                    host=active["host"],
                    changes=[
                        host_events_pb2.PowerStateChange(
                            server_id=server["id"],
                            power_state=power_state_pb2.POWER_STATE_SHUTDOWN,
                        ),
                        host_events_pb2.PowerStateChange(
                            server_id=str(uuid.uuid4()),
                            power_state=power_state_pb2.POWER_STATE_RUNNING,
                        ),
                    ],
                ),
                metadata=SERVICE,
                timeout=10,
            )
        assert len(reply.unknown_server_ids) == 1
        after = client.get(f"/v1/servers/{server['id']}").json()
    assert (after["status"], after["power_state"]) == ("SHUTOFF", "SHUTDOWN")


def _host_up(mesh, host: str) -> bool:
    from tests.harness import ADMIN

    with mesh.rest(ADMIN) as admin:
        reply = admin.get(f"/v1/hosts/{host}")
    return (
        reply.status_code == 200
        and reply.json()["status"] == "UP"
        and bool(reply.json().get("resources"))
    )
