"""What the scheduler is asked, as plain data (the servicer builds it from protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class GroupPolicy(StrEnum):
    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"
    SOFT_AFFINITY = "soft-affinity"
    SOFT_ANTI_AFFINITY = "soft-anti-affinity"


@dataclass(frozen=True)
class ServerGroup:
    id: str
    policy: GroupPolicy


@dataclass(frozen=True)
class SchedulingRequest:
    instance_ids: tuple[str, ...]
    project_id: str
    user_id: str
    resources: dict[str, int]
    required_traits: tuple[str, ...] = ()
    forbidden_traits: tuple[str, ...] = ()
    availability_zone: str = ""
    server_group: ServerGroup | None = None
    ignore_hosts: frozenset[str] = frozenset()


@dataclass
class Placing:
    """One instance's decision in progress: the request, and where the group already is.

    `group_providers` grows as a multi-create places its members, so the
    second member of an anti-affinity group sees where the first one went.
    """

    request: SchedulingRequest
    instance_id: str
    group_providers: set[str] = field(default_factory=set)
