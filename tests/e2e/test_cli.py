"""The `stratus` CLI end to end: a server's whole life through the real edge, run in-process."""

from __future__ import annotations

import json
import uuid
from functools import partial

from click.testing import CliRunner

from cli.stratus import main
from tests.compute_client import member_of
from tests.harness import ADMIN


def stratus(mesh, identity: dict[str, str], *args: str) -> dict:
    """Run `stratus -f json ARGS` as `identity`; the JSON it printed."""
    options = ["--url", mesh.layout.rest_url, "--token", mesh.token(identity), "-f", "json"]
    result = CliRunner().invoke(main, [*options, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_server_lifecycle_with_wait(sqlite_mesh):
    admin = partial(stratus, sqlite_mesh, ADMIN)
    member = partial(stratus, sqlite_mesh, member_of())
    flavor = f"cli-m1-{uuid.uuid4().hex[:8]}"
    # Only the fake hosts can boot "cirros" without an image file.
    pin = "trait:CUSTOM_DRIVER_FAKE=required"
    admin("flavor", "create", flavor, "--vcpus", "1", "--ram-mb", "256", "--extra-spec", pin)
    wait = ["--wait", "--timeout", "60"]

    created = member("server", "create", "cli-1", "--flavor", flavor, "--image", "cirros", *wait)
    (server,) = created["servers"]
    assert server["status"] == "ACTIVE"
    assert member("server", "stop", server["id"], *wait)["status"] == "SHUTOFF"
    assert member("server", "start", server["id"], *wait)["status"] == "ACTIVE"
    member("server", "delete", server["id"], *wait)

    assert all(s["status"] == "DELETED" for s in member("server", "list")["servers"])
    admin("flavor", "delete", flavor)
