"""api_gateway killed in the middle of things: nothing half done, nothing leaked.

Each test prints how long recovery took, so the README can state it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from stratus.hostagent.v1 import hostagent_pb2 as agent_pb

from tests.compute_client import create, fake_flavor, member_of, unlimited, wait
from tests.hostagent_client import agent, call, wait_for
from tests.placement_client import Placement

ETCDCTL = str(Path(sys.executable).with_name("etcdctl"))


def on_hosts(mesh) -> set[str]:
    found = set()
    for port_name in ("hostagent", "hostagent_2"):
        with mesh.channel(port_name) as channel:
            found |= {
                s.id
                for s in call(agent(channel).ListServers, agent_pb.ListServersRequest()).servers
            }
    return found


def test_killed_during_a_multi_create_every_server_settles_and_nothing_leaks(fault_mesh):
    me = member_of()
    project = me["x-stratus-project"]
    unlimited(fault_mesh, project, "instances", "cores", "ram_mb")
    flavor = fake_flavor(fault_mesh)
    with fault_mesh.rest(me) as client:
        servers = create(client, flavor, name="crash", min_count=10, max_count=10)
    fault_mesh.kill("api_gateway")  # builds in flight: scheduled, spawning (1 s each)
    killed = time.monotonic()
    fault_mesh.restart("api_gateway")

    ids = [s["id"] for s in servers]
    with fault_mesh.rest(me) as client:
        settled = [wait(client, i, timeout=60) for i in ids]
        took = time.monotonic() - killed
        print(f"\n10 servers settled {took:.1f}s after api_gateway was killed mid-build")
        assert {s["status"] for s in settled} <= {"ACTIVE", "ERROR"}
        with fault_mesh.channel("placement") as channel:
            placement = Placement(channel)
            for server in settled:
                assert bool(placement.held(server["id"])) == (server["status"] == "ACTIVE")
        active = {s["id"] for s in settled if s["status"] == "ACTIVE"}
        assert active <= on_hosts(fault_mesh)
        assert client.get("/v1/limits").json()["limits"]["instances"]["in_use"] == 10

        for server_id in ids:
            client.delete(f"/v1/servers/{server_id}")
        for server_id in ids:
            wait(client, server_id, timeout=60, until=lambda s: s["status"] == "DELETED")
        limits = client.get("/v1/limits").json()["limits"]
    assert limits["instances"]["in_use"] == 0 and limits["cores"]["in_use"] == 0
    with fault_mesh.channel("placement") as channel:
        placement = Placement(channel)
        assert all(not placement.held(i) for i in ids)
    assert not set(ids) & on_hosts(fault_mesh)


def leader(mesh) -> str:
    out = subprocess.run(
        [
            ETCDCTL,
            "--endpoints",
            mesh.layout.address("etcd"),
            "get",
            "/stratus/leaders/reconciler",
            "--print-value-only",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out


def test_a_killed_reconciler_leader_is_replaced_within_the_ttl(fault_mesh):
    replica = fault_mesh.start_replica("api_gateway")
    main = fault_mesh.layout.address("api_gateway")
    _, first = wait_for(lambda: leader(fault_mesh), 10, "a leader")
    doomed = (
        "api_gateway"
        if first.endswith(main)
        else next(name for name in fault_mesh.processes if name.startswith("api_gateway-replica"))
    )
    survivor = replica if doomed == "api_gateway" else main
    fault_mesh.kill(doomed)
    took, _ = wait_for(lambda: leader(fault_mesh).endswith(survivor), 10, "a new leader")
    print(f"\nreconciler leader SIGKILLed: replaced after {took:.2f}s (lease TTL 2 s)")
    assert took <= 2 + 1.5
    if doomed == "api_gateway":
        fault_mesh.restart("api_gateway")
