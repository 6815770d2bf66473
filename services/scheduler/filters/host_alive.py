"""Only hosts whose agent holds its liveness key in etcd get new servers."""

from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "host-alive"
reason = "host(s) whose agent is not alive (no liveness key in etcd)"


def passes(host: HostState, placing: Placing) -> bool:
    return host.live is not None
