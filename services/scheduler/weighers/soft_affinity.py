"""Soft affinity: prefer the hosts that already hold members of the group."""

from services.common.config import SchedulerSection
from services.scheduler.host_state import HostState
from services.scheduler.request import GroupPolicy, Placing

name = "soft-affinity"


def multiplier(config: SchedulerSection) -> float:
    return config.soft_affinity_weight_multiplier


def raw(host: HostState, placing: Placing) -> float:
    group = placing.request.server_group
    if group is None or group.policy is not GroupPolicy.SOFT_AFFINITY:
        return 0.0
    return 1.0 if host.provider_uuid in placing.group_providers else 0.0
