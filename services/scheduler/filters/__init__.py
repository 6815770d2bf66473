"""Filters: each removes the hosts that cannot take the instance, and says why.

A filter is a small module with a `name` (used in the no-valid-host message:
"9,990 removed by anti-affinity"), a `reason` a person can read, and a pure
predicate. What placement already checked (resources, traits) is not
repeated here. FILTERS is the chain in order: cheap checks first, and the
ones that remove the most hosts early, so later ones see fewer.
"""

from __future__ import annotations

from typing import Protocol

from services.scheduler.filters import (
    affinity,
    anti_affinity,
    availability_zone,
    host_alive,
    ignore_hosts,
    resources_fit,
)
from services.scheduler.host_state import HostState
from services.scheduler.request import Placing


class HostFilter(Protocol):
    name: str
    reason: str

    def passes(self, host: HostState, placing: Placing) -> bool: ...


FILTERS: tuple[HostFilter, ...] = (
    host_alive,
    ignore_hosts,
    availability_zone,
    affinity,
    anti_affinity,
    resources_fit,
)
