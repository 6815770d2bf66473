"""A host agent's life: it dies (its key goes within the TTL), it comes back (same provider).

Each test starts its own agent process against the shared mesh's placement
and etcd, so killing it disturbs nobody else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from deploy.local.mesh import free_port, process_env, start_service
from tests.e2e.test_hostagent_registration import etcd_hosts
from tests.hostagent_client import providers_named, wait_for
from tests.placement_client import Placement

TTL_S = 2


@pytest.fixture
def placement(sqlite_mesh):
    with sqlite_mesh.channel("placement") as channel:
        yield Placement(channel)


@pytest.fixture
def start_agent(sqlite_mesh, tmp_path):
    """Start agents named `host` with a 2 s liveness TTL; all are stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(host: str, **env_overrides: str) -> subprocess.Popen:
        env = process_env(sqlite_mesh.layout) | {
            "STRATUS_HOSTAGENT__HOST": host,
            "STRATUS_HOSTAGENT__LIVENESS_TTL_S": str(TTL_S),
            **env_overrides,
        }
        with open(tmp_path / f"{host}.log", "ab") as log:
            proc, _ = start_service("hostagent", env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_agent_loses_its_key_within_the_ttl(sqlite_mesh, start_agent):
    host = f"doomed-{uuid.uuid4().hex[:6]}"
    agent = start_agent(host)
    wait_for(lambda: host in etcd_hosts(sqlite_mesh), 10, f"{host} registered")

    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    took, _ = wait_for(lambda: host not in etcd_hosts(sqlite_mesh), TTL_S + 3, "key expiry")
    print(f"\n{host}: liveness key gone {took:.2f}s after SIGKILL (TTL {TTL_S}s)")
    assert took <= TTL_S + 1


def test_stopped_agent_gives_up_its_key_at_once(sqlite_mesh, start_agent):
    host = f"leaving-{uuid.uuid4().hex[:6]}"
    agent = start_agent(host)
    wait_for(lambda: host in etcd_hosts(sqlite_mesh), 10, f"{host} registered")

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=15) == 0
    assert host not in etcd_hosts(sqlite_mesh)


def test_restarted_agent_reports_to_the_same_provider(sqlite_mesh, start_agent, placement):
    host = f"phoenix-{uuid.uuid4().hex[:6]}"
    agent = start_agent(host)
    _, first = wait_for(lambda: providers_named(placement, host), 10, f"{host} in placement")

    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    start_agent(host)
    wait_for(lambda: host in etcd_hosts(sqlite_mesh), 10, f"{host} registered again")
    again = providers_named(placement, host)
    assert [p.uuid for p in again] == [first[0].uuid]
    assert etcd_hosts(sqlite_mesh)[host]["provider_uuid"] == first[0].uuid


def test_agent_serves_while_placement_is_unreachable(sqlite_mesh, start_agent, tmp_path):
    host = f"patient-{uuid.uuid4().hex[:6]}"
    start_agent(host, STRATUS_PLACEMENT__LISTEN=f"127.0.0.1:{free_port()}")
    wait_for(lambda: host in etcd_hosts(sqlite_mesh), 10, f"{host} registered in etcd")
    log = tmp_path / f"{host}.log"
    wait_for(lambda: "cannot report to placement" in log.read_text(), 10, "warning")
