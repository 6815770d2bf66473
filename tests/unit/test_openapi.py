"""The OpenAPI document matches the REST edge: every route, no internal one, refs resolve."""

from __future__ import annotations

import importlib.util
import json
import re

from deploy.local.mesh import DESCRIPTOR, ROOT
from tools.gen_openapi import openapi


def _render_module():
    # envoy/ is not importable as "envoy": the xds protos own that package name.
    spec = importlib.util.spec_from_file_location("stratus_envoy_render", ROOT / "envoy/render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_rest_route_is_described_and_claims_are_not():
    document = openapi(DESCRIPTOR)
    paths = document["paths"]
    assert {"post", "get"} <= paths["/v1/servers"].keys()
    assert "post" in paths["/v1/servers/{id}:reboot"]
    assert "patch" in paths["/v1/servers/{server.id}"]
    claims = paths["/v1/placement/consumers/{consumer_uuid}/allocations"]
    assert claims.keys() == {"get"}  # writes are the mesh's own
    _, bindings, _ = _render_module().public_api(DESCRIPTOR)
    described = {(verb.upper(), path) for path, operations in paths.items() for verb in operations}
    for method, regex, _ in bindings:
        assert (
            any(
                m == method and re.fullmatch(regex, re.sub(r"{[^}]+}", "x", p))
                for m, p in described
            )
            or "allocations" in regex
        ), (method, regex)


def test_schemas_follow_the_transcoder_and_every_ref_resolves():
    document = openapi(DESCRIPTOR)
    schemas = document["components"]["schemas"]
    server = schemas["compute_v1_Server"]["properties"]
    assert server["status"]["readOnly"] and server["metadata"]["additionalProperties"]
    assert server["create_time"] == {"type": "string", "format": "date-time", "readOnly": True}
    for ref in set(_refs(document)):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    json.dumps(document)  # plain JSON all the way down
