"""A mesh of its own for fault tests: they kill its processes.

Timeouts are short so that recovery fits in a test: the reconciler runs
every half second, resumes a task after 2 s without progress, and its
leadership lease lasts 2 s; every fake host takes 1 s per operation, so a
build is still in flight when a test kills api_gateway.
"""

from __future__ import annotations

import pytest

from deploy.local.mesh import MeshLayout, wait_hosts_reported
from tests.harness import RunningMesh

FAULT_SETTINGS = {
    "STRATUS_API_GATEWAY__RECONCILE_INTERVAL_S": "0.5",
    "STRATUS_API_GATEWAY__STUCK_AFTER_S": "2",
    "STRATUS_API_GATEWAY__LEADER_TTL_S": "2",
    "STRATUS_HOSTAGENT__FAKE__DELAY_S": "1",
    "STRATUS_HOSTAGENT__LIVENESS_TTL_S": "2",
}


@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory):
    state = tmp_path_factory.mktemp("fault-mesh")
    mesh = RunningMesh(
        MeshLayout.on_free_ports(state / "state"), logs=state / "logs", extra_env=FAULT_SETTINGS
    )
    mesh.start()
    wait_hosts_reported(mesh.layout)
    yield mesh
    mesh.stop()
