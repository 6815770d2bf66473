"""Authentication at the edge: every request needs a bearer token the mesh's key signed,
and the identity a service sees comes from that token only, never from the client's headers.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from cli.tokens import SigningKey, load_signing_key, mint_token
from tests.harness import MEMBER

FORGED_ADMIN = {"x-stratus-roles": "admin"}
STRATUS_MANAGE = Path(sys.executable).parent / "stratus-manage"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _bad_tokens(state_dir: Path) -> dict[str, str]:
    key = load_signing_key(state_dir)
    claims = {"project": "p", "user": "u", "roles": ["admin"]}
    hour = timedelta(hours=1)
    no_expiry = jwt.encode(
        {"iss": "stratus", "project": "p", "roles": "admin"},
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid},
    )
    return {
        # Past Envoy's 60 s clock-skew allowance.
        "expired": mint_token(key, **claims, ttl=hour, now=time.time() - 2 * 3600),
        "signed by another key": mint_token(SigningKey.generate(), **claims, ttl=hour),
        "another issuer": mint_token(key, **claims, ttl=hour, issuer="not-stratus"),
        "no expiry": no_expiry,
        "not a token": "not-a-jwt",
    }


def assert_unauthenticated(response: httpx.Response) -> dict:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert (error["code"], error["status"], error["reason"]) == (
        401,
        "UNAUTHENTICATED",
        "stratus.unauthenticated",
    )
    assert error["message"].startswith("a valid bearer token is required")
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/flavors", None),
        ("GET", "/v1/quota/projects/p", None),
        ("GET", "/v1/placement/resource_providers", None),
        # Refused before the body guard reads the (bad) body, and before routing.
        ("POST", "/v1/flavors", {"name": "x", "bogus": 1}),
        ("GET", "/v1/no-such-route", None),
    ],
)
def test_no_token_is_a_json_401_on_every_route(sqlite_mesh, method, path, body):
    with sqlite_mesh.rest() as anonymous:
        response = anonymous.request(method, path, json=body)
    error = assert_unauthenticated(response)
    assert "Jwt is missing" in error["message"]


def test_identity_headers_alone_are_not_a_token(sqlite_mesh):
    with sqlite_mesh.rest() as client:
        assert_unauthenticated(client.get("/v1/flavors", headers=MEMBER))


@pytest.mark.parametrize(
    "kind", ["expired", "signed by another key", "another issuer", "no expiry", "not a token"]
)
def test_a_bad_token_is_a_json_401(sqlite_mesh, kind):
    token = _bad_tokens(sqlite_mesh.layout.state_dir)[kind]
    with sqlite_mesh.rest() as client:
        assert_unauthenticated(client.get("/v1/flavors", headers=_bearer(token)))


def test_a_token_in_the_query_string_is_not_read(sqlite_mesh):
    """Query strings end up in logs; only the Authorization header carries a token."""
    token = sqlite_mesh.token(MEMBER)
    with sqlite_mesh.rest() as client:
        assert_unauthenticated(client.get("/v1/flavors", params={"access_token": token}))


def test_a_forged_roles_header_does_not_make_a_member_admin(sqlite_mesh):
    with sqlite_mesh.rest(MEMBER) as member:
        member.headers.update(FORGED_ADMIN)
        assert member.get("/v1/flavors").status_code == 200
        denied = member.post(
            "/v1/flavors", json={"name": f"f-{uuid.uuid4().hex[:8]}", "vcpus": 1, "ram_mb": 256}
        )
    assert denied.status_code == 403
    assert denied.json()["error"]["reason"] == "stratus.admin_required"


def test_a_forged_header_does_not_fill_a_claim_the_token_lacks(sqlite_mesh):
    """A member's token without a project, plus a forged x-stratus-project: the quota
    service must see no project at all (it names the caller's project when refusing)."""
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    no_project = {"x-stratus-roles": "member", "x-stratus-user": "mallory"}
    no_roles = {"x-stratus-user": "mallory"}
    with sqlite_mesh.rest(no_project) as client:
        refused = client.get(f"/v1/quota/projects/{victim}", headers={"x-stratus-project": victim})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["reason"] == "quota.project_forbidden"
    assert error["message"].startswith("project (none) may read its own quota only")
    # Same for roles: a token with none gets none from a forged header.
    with sqlite_mesh.rest(no_roles) as client:
        refused = client.get(f"/v1/quota/projects/{victim}", headers=FORGED_ADMIN)
    assert refused.status_code == 403, refused.text


def test_the_token_project_is_the_one_the_service_sees(sqlite_mesh):
    own = MEMBER["x-stratus-project"]
    with sqlite_mesh.rest(MEMBER) as member:
        member.headers["x-stratus-project"] = "someone-else"
        assert member.get(f"/v1/quota/projects/{own}").status_code == 200
        assert member.get("/v1/quota/projects/someone-else").status_code == 403


def test_native_grpc_without_a_valid_token_is_unauthenticated(sqlite_mesh):
    bad = _bad_tokens(sqlite_mesh.layout.state_dir)["signed by another key"]
    edge = sqlite_mesh.layout.address("envoy")
    with grpc.insecure_channel(edge) as channel:
        stub = flavors_pb2_grpc.FlavorServiceStub(channel)
        for metadata in [tuple(MEMBER.items()), tuple(_bearer(bad).items())]:
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListFlavors(flavors_pb2.ListFlavorsRequest(), metadata=metadata, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_native_grpc_through_the_edge_ignores_forged_roles(sqlite_mesh):
    metadata = (*sqlite_mesh.edge_metadata(MEMBER), *FORGED_ADMIN.items())
    flavor = flavors_pb2.Flavor(name=f"f-{uuid.uuid4().hex[:8]}", vcpus=1, ram_mb=256)
    edge = sqlite_mesh.layout.address("envoy")
    with grpc.insecure_channel(edge) as channel, pytest.raises(grpc.RpcError) as denied:
        flavors_pb2_grpc.FlavorServiceStub(channel).CreateFlavor(
            flavors_pb2.CreateFlavorRequest(flavor=flavor), metadata=metadata, timeout=5
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_stratus_manage_mints_tokens_the_edge_accepts(sqlite_mesh):
    state = str(sqlite_mesh.layout.state_dir)
    project = f"cli-{uuid.uuid4().hex[:8]}"
    created = subprocess.run(
        [
            str(STRATUS_MANAGE),
            "token",
            "create",
            "--project",
            project,
            "--user",
            "carol",
            "--role",
            "member",
            "--ttl",
            "10m",
            "--state-dir",
            state,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    with sqlite_mesh.rest() as client:
        client.headers.update(_bearer(created.stdout.strip()))
        assert client.get("/v1/flavors").status_code == 200
        assert client.get(f"/v1/quota/projects/{project}").status_code == 200
        assert client.get("/v1/quota/projects/another").status_code == 403
    jwks = subprocess.run(
        [str(STRATUS_MANAGE), "key", "show-jwks", "--state-dir", state],
        capture_output=True,
        text=True,
        check=True,
    )
    assert load_signing_key(sqlite_mesh.layout.state_dir).kid in jwks.stdout
