"""Hosts the caller asked to avoid, for example where a spawn just failed."""

from services.scheduler.host_state import HostState
from services.scheduler.request import Placing

name = "ignore-hosts"
reason = "host(s) the request asked to avoid"


def passes(host: HostState, placing: Placing) -> bool:
    return host.host not in placing.request.ignore_hosts
