"""etcd restarts under a running mesh: no host is declared dead for it, and work goes on."""

from __future__ import annotations

import time

from tests.compute_client import create, fake_flavor, member_of, wait
from tests.harness import ADMIN
from tests.hostagent_client import wait_for


def host_status(mesh) -> dict[str, str]:
    with mesh.rest(ADMIN) as admin:
        return {h["name"]: h["status"] for h in admin.get("/v1/hosts").json()["hosts"]}


def test_an_etcd_restart_marks_no_host_down_and_boots_go_on(fault_mesh):
    assert set(host_status(fault_mesh).values()) == {"UP"}
    fault_mesh.kill("etcd")
    down = time.monotonic()
    # While etcd is away the last known hosts stand: an outage is not a death.
    assert set(host_status(fault_mesh).values()) == {"UP"}
    time.sleep(3)  # longer than the 2 s host TTL
    assert set(host_status(fault_mesh).values()) == {"UP"}
    fault_mesh.restart("etcd")
    took, _ = wait_for(lambda: set(host_status(fault_mesh).values()) == {"UP"}, 10, "hosts UP")
    print(f"\netcd down {time.monotonic() - down:.1f}s; hosts UP {took:.2f}s after it came back")

    with fault_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(fault_mesh))
        assert wait(client, server["id"], timeout=30)["status"] == "ACTIVE"
