"""The Envoy config is derived from the descriptor set, not written by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy.local.mesh import DESCRIPTOR, MeshLayout


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
