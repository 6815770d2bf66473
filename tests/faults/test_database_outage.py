"""PostgreSQL stops for 5 s under light load: clear 503s, then full recovery,
no server lost or duplicated.

The test stops and starts the machine's PostgreSQL cluster (root and
pg_ctlcluster needed; CI has both). It runs after every other test that uses
PostgreSQL (tests/faults sorts after tests/e2e), and always starts the
cluster again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from deploy.local.mesh import MeshLayout, wait_hosts_reported
from tests.compute_client import create, fake_flavor, member_of, wait
from tests.faults.conftest import FAULT_SETTINGS
from tests.harness import RunningMesh
from tests.placement_client import Placement

OUTAGE_S = 5


def _cluster() -> list[str]:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg(action: str) -> None:
    subprocess.run(
        [*_cluster(), action, *(["-m", "fast"] if action == "stop" else [])],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def pg_mesh(tmp_path_factory, postgres):
    postgres.require()
    if (
        os.geteuid() != 0
        or not shutil.which("pg_ctlcluster")
        or not Path("/etc/postgresql").exists()
    ):
        reason = "stopping PostgreSQL needs root and a local pg_ctlcluster cluster"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI runs this test)")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("pg-fault-mesh")
    layout = MeshLayout.on_free_ports(state / "state")
    for service in ("api_gateway", "placement", "quota"):
        layout.database_urls[service] = postgres.new()
    mesh = RunningMesh(layout, logs=state / "logs", extra_env=FAULT_SETTINGS)
    mesh.start()
    wait_hosts_reported(mesh.layout)
    yield mesh
    mesh.stop()


def test_a_database_outage_is_a_clear_503_then_service_resumes(pg_mesh):
    me = member_of()
    with pg_mesh.rest(me) as client:
        flavor = fake_flavor(pg_mesh)
        (before,) = create(client, flavor, name="before")
        wait(client, before["id"])

        _pg("stop")
        stopped = time.monotonic()
        try:
            seen = set()
            while time.monotonic() - stopped < OUTAGE_S:
                reply = client.get(f"/v1/servers/{before['id']}")
                if reply.status_code != 200:
                    seen.add((reply.status_code, reply.json()["error"]["reason"]))
                refused = client.post(
                    "/v1/servers",
                    json={"server": {"name": "during", "flavor": flavor, "image_ref": "cirros"}},
                )
                assert refused.status_code == 503, refused.text
                time.sleep(0.3)
        finally:
            _pg("start")
        assert seen == {(503, "stratus.database_unavailable")}

        started = time.monotonic()
        while True:
            try:
                if client.get(f"/v1/servers/{before['id']}").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 30, "no recovery within 30 s"
            time.sleep(0.2)
        print(f"\nserving again {time.monotonic() - started:.2f}s after PostgreSQL came back")

        (after,) = create(client, flavor, name="after")
        assert wait(client, after["id"])["status"] == "ACTIVE"
        names = sorted(s["name"] for s in client.get("/v1/servers").json()["servers"])
        assert names == ["after", "before"]  # nothing lost, nothing made twice
        assert client.get("/v1/limits").json()["limits"]["instances"]["in_use"] == 2
    with pg_mesh.channel("placement") as channel:
        placement = Placement(channel)
        assert placement.held(before["id"]) and placement.held(after["id"])
