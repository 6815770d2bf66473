"""Helpers for compute API tests: projects of their own, flavors, waiting for servers."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.harness import ADMIN, RunningMesh

SETTLED = {"ACTIVE", "SHUTOFF", "ERROR", "DELETED"}


def member_of(project: str | None = None, user: str = "alice") -> dict[str, str]:
    """A member of a project of its own, so tests never share quota or servers."""
    return {
        "x-stratus-roles": "member",
        "x-stratus-project": project or f"p-{uuid.uuid4().hex[:8]}",
        "x-stratus-user": user,
    }


def fake_flavor(mesh: RunningMesh, vcpus: int = 1, ram_mb: int = 256) -> str:
    """A flavor that lands on the mesh's fake hosts only (they have CUSTOM_DRIVER_FAKE)."""
    return _flavor(mesh, vcpus, ram_mb, "CUSTOM_DRIVER_FAKE")


def libvirt_flavor(mesh: RunningMesh) -> str:
    return _flavor(mesh, 1, 128, "CUSTOM_DRIVER_LIBVIRT")


def _flavor(mesh: RunningMesh, vcpus: int, ram_mb: int, trait: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    with mesh.rest(ADMIN) as admin:
        reply = admin.post(
            "/v1/flavors",
            json={
                "name": name,
                "vcpus": vcpus,
                "ram_mb": ram_mb,
                "extra_specs": {f"trait:{trait}": "required"},
            },
        )
        assert reply.status_code == 200, reply.text
    return name


def unlimited(mesh: RunningMesh, project: str, *resources: str) -> None:
    with mesh.rest(ADMIN) as admin:
        for resource in resources:
            reply = admin.put(f"/v1/quota/projects/{project}/limits/{resource}", json={"limit": -1})
            assert reply.status_code == 200, reply.text


def create(client: httpx.Client, flavor: str, name: str = "web", **fields) -> list[dict]:
    body = {"server": {"name": name, "flavor": flavor, "image_ref": "cirros"}}
    for key in ("min_count", "max_count"):
        if key in fields:
            body[key] = fields.pop(key)
    body["server"].update(fields)
    reply = client.post("/v1/servers", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["servers"]


def wait(client: httpx.Client, server_id: str, timeout: float = 30.0, until=None) -> dict:
    """Poll until the server settles (or `until(server)` holds); the server."""
    until = until or (lambda s: s["status"] in SETTLED and not s.get("task_state"))
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/v1/servers/{server_id}")
        server = reply.json() if reply.status_code == 200 else {"status": "DELETED"}
        if until(server):
            return server
        if time.monotonic() > deadline:
            raise AssertionError(f"server {server_id} did not settle: {server}")
        time.sleep(0.1)
