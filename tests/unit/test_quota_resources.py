"""Quota's resource names: one list in code, the same in the contract and config."""

from __future__ import annotations

from buf.validate import validate_pb2
from stratus.quota.v1 import quota_pb2

from services.common.config import Settings
from services.quota.limits import RESOURCES, default_limits


def _rules(message: str, field: str):
    descriptor = quota_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    return descriptor.GetOptions().Extensions[validate_pb2.field]


def _allowed(string_rules) -> tuple[str, ...]:
    return tuple(getattr(string_rules, "in"))  # `in` is a Python keyword


def test_the_proto_accepts_exactly_the_resources_quota_knows():
    assert _allowed(_rules("ClaimRequest", "deltas").map.keys.string) == RESOURCES
    for message in ("SetProjectLimitRequest", "DeleteProjectLimitRequest"):
        assert _allowed(_rules(message, "resource").string) == RESOURCES


def test_every_resource_has_a_configurable_default(monkeypatch):
    monkeypatch.delenv("STRATUS_CONFIG_FILE", raising=False)
    monkeypatch.setenv("STRATUS_QUOTA__DEFAULT_CORES", "-1")
    defaults = default_limits(Settings().quota)
    assert list(defaults) == list(RESOURCES)
    assert defaults["cores"] == -1 and defaults["instances"] == 10
