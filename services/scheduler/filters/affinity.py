"""Hard affinity: once a member of the group is placed, the others follow it."""

from services.scheduler.host_state import HostState
from services.scheduler.request import GroupPolicy, Placing

name = "affinity"
reason = "host(s) other than the one the affinity group is on"


def passes(host: HostState, placing: Placing) -> bool:
    group = placing.request.server_group
    if group is None or group.policy is not GroupPolicy.AFFINITY or not placing.group_providers:
        return True
    return host.provider_uuid in placing.group_providers
