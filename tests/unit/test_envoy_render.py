"""The Envoy config is derived from the descriptor set, not written by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from cli.tokens import ISSUER, jwks_path, key_path
from deploy.local.mesh import DESCRIPTOR, MeshLayout
from services.common.context import PROJECT_KEY, ROLES_KEY, USER_KEY


def _hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def test_rendered_config_is_valid_for_envoy(tmp_path):
    layout = MeshLayout.on_free_ports(tmp_path)
    path = layout.render_envoy()
    envoy = Path(sys.executable).parent / "envoy"
    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_body_binding_goes_through_its_owners_guard(tmp_path):
    layout = MeshLayout.on_free_ports(tmp_path)
    config = json.loads(layout.render_envoy().read_text())
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    guarded = {
        (r["match"]["headers"][0]["string_match"]["exact"], r["match"]["safe_regex"]["regex"]): r[
            "typed_per_filter_config"
        ]["envoy.filters.http.ext_proc"]["overrides"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        for r in routes
        if "overrides" in r["typed_per_filter_config"]["envoy.filters.http.ext_proc"]
    }
    assert guarded[("POST", "^/v1/flavors$")] == "api_gateway"
    assert guarded[("PUT", "^/v1/placement/resource_providers/[^/]+/inventories$")] == "placement"
    assert guarded[("POST", "^/v1/placement/allocation_candidates:search$")] == "placement"
    assert all(method in ("POST", "PUT", "PATCH") for method, _ in guarded)
    transcoder = next(
        f for f in _hcm(config)["http_filters"] if f["name"].endswith("grpc_json_transcoder")
    )
    services = transcoder["typed_config"]["services"]
    assert "stratus.compute.v1.FlavorService" in services
    assert "stratus.placement.v1.AllocationService" in services
    assert not any("scheduler" in s or "hostagent" in s for s in services)
    assert transcoder["typed_config"]["proto_descriptor"] == str(DESCRIPTOR.resolve())


def _filters(config: dict) -> list[dict]:
    return _hcm(config)["http_filters"]


def test_every_request_needs_a_token_from_the_states_key(tmp_path):
    layout = MeshLayout.on_free_ports(tmp_path)
    config = json.loads(layout.render_envoy().read_text())
    jwt_filter = next(f for f in _filters(config) if f["name"].endswith("jwt_authn"))
    auth = jwt_filter["typed_config"]
    # One rule for every path, REST and gRPC alike, and no route opts out.
    assert auth["rules"] == [{"match": {"prefix": "/"}, "requires": {"provider_name": "stratus"}}]
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    assert not any(jwt_filter["name"] in r.get("typed_per_filter_config", {}) for r in routes)
    provider = auth["providers"]["stratus"]
    assert provider["issuer"] == ISSUER
    assert provider["local_jwks"]["filename"] == str(jwks_path(layout.state_dir))
    assert jwks_path(layout.state_dir).exists() and key_path(layout.state_dir).exists()
    assert provider["from_headers"] == [{"name": "Authorization", "value_prefix": "Bearer "}]
    assert provider["forward"] is False and provider["require_expiration"] is True


def test_identity_headers_come_only_from_the_token(tmp_path):
    """The Lua filter strips client copies of exactly the headers jwt_authn sets, before it."""
    config = json.loads(MeshLayout.on_free_ports(tmp_path).render_envoy().read_text())
    names = [f["name"].rsplit(".", 1)[-1] for f in _filters(config)]
    assert names == ["lua", "jwt_authn", "ext_proc", "grpc_json_transcoder", "router"]
    provider = _filters(config)[1]["typed_config"]["providers"]["stratus"]
    set_by_token = {h["header_name"] for h in provider["claim_to_headers"]}
    assert set_by_token == {PROJECT_KEY, USER_KEY, ROLES_KEY}
    lua = _filters(config)[0]["typed_config"]["default_source_code"]["inline_string"]
    stripped = re.search(r"local IDENTITY = \{(.*?)\}", lua).group(1)
    assert set(re.findall(r'"([^"]+)"', stripped)) == set_by_token


def test_only_public_packages_are_routed_for_grpc(tmp_path):
    """Internal contracts (scheduler, host agent, host events) never pass the edge."""
    config = json.loads(MeshLayout.on_free_ports(tmp_path).render_envoy().read_text())
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    grpc_prefixes = [r["match"]["prefix"] for r in routes if r["match"].get("prefix", "/") != "/"]
    assert grpc_prefixes
    for prefix in grpc_prefixes:
        assert prefix.startswith(
            ("/stratus.compute.v1.", "/stratus.placement.v1.", "/stratus.quota.v1.")
        )
    assert not any("HostEvent" in p for p in grpc_prefixes)
