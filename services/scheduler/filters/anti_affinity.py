"""Hard anti-affinity: no two members of the group on one host."""

from services.scheduler.host_state import HostState
from services.scheduler.request import GroupPolicy, Placing

name = "anti-affinity"
reason = "host(s) already holding a member of the anti-affinity group"


def passes(host: HostState, placing: Placing) -> bool:
    group = placing.request.server_group
    if group is None or group.policy is not GroupPolicy.ANTI_AFFINITY:
        return True
    return host.provider_uuid not in placing.group_providers
