"""Soft anti-affinity: prefer hosts without members of the group."""

from services.common.config import SchedulerSection
from services.scheduler.host_state import HostState
from services.scheduler.request import GroupPolicy, Placing

name = "soft-anti-affinity"


def multiplier(config: SchedulerSection) -> float:
    return config.soft_anti_affinity_weight_multiplier


def raw(host: HostState, placing: Placing) -> float:
    group = placing.request.server_group
    if group is None or group.policy is not GroupPolicy.SOFT_ANTI_AFFINITY:
        return 0.0
    return 0.0 if host.provider_uuid in placing.group_providers else 1.0
