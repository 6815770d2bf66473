"""The edge body guard: which route a body belongs to, and what it rejects."""

from __future__ import annotations

import re

from google.rpc import error_details_pb2
from stratus.compute.v1 import flavors_pb2

from services.common.body_guard import BodyGuard, BodyRule, check_body
from services.common.http_paths import path_pattern

FLAVORS = flavors_pb2.DESCRIPTOR.services_by_name["FlavorService"]


def test_only_methods_with_a_body_are_guarded():
    guard = BodyGuard([FLAVORS])
    assert guard.find_rule("POST", "/v1/flavors?x=1") is not None
    assert guard.find_rule("GET", "/v1/flavors") is None
    assert guard.find_rule("POST", "/v1/flavors/abc") is None


def test_path_templates():
    assert re.match(path_pattern("/v1/servers/{id}:reboot"), "/v1/servers/abc:reboot")
    assert not re.match(path_pattern("/v1/servers/{id}"), "/v1/servers/a/b")
    assert re.match(path_pattern("/v1/{name=projects/*/keys/**}"), "/v1/projects/p/keys/a/b")


def test_unknown_fields_are_found_at_any_depth():
    rule = BodyRule(
        "POST", re.compile(path_pattern("/x")), error_details_pb2.BadRequest.DESCRIPTOR, "*"
    )
    error = check_body(rule, b'{"field_violations": [{"field": "a"}, {"feild": "b"}]}')
    assert error.code == "stratus.unknown_field"
    assert [v.field for v in error.field_violations] == ["field_violations[1].feild"]


def test_map_keys_are_free_but_values_are_typed():
    rule = BodyRule(
        "POST", re.compile(path_pattern("/v1/flavors")), flavors_pb2.Flavor.DESCRIPTOR, "flavor"
    )
    assert check_body(rule, b'{"extra_specs": {"anything:goes": "v"}}') is None
    assert check_body(rule, b'{"extra_specs": {"k": 3}}').code == "stratus.invalid_field"


def test_empty_body_is_left_to_field_rules():
    rule = BodyRule(
        "POST", re.compile(path_pattern("/v1/flavors")), flavors_pb2.Flavor.DESCRIPTOR, "flavor"
    )
    assert check_body(rule, b"  ") is None
