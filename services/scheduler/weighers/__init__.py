"""Weighers: rank the hosts that passed every filter.

Each weigher gives a raw value per host; values are scaled to 0..1 across
the hosts being weighed (as Nova does, so no weigher drowns the others by its
units) and multiplied by the weigher's configured multiplier. A positive
multiplier on free RAM or VCPU spreads servers, a negative one packs them.
"""

from __future__ import annotations

from typing import Protocol

from services.common.config import SchedulerSection
from services.scheduler.host_state import HostState
from services.scheduler.request import Placing
from services.scheduler.weighers import free_ram, free_vcpu, soft_affinity, soft_anti_affinity


class HostWeigher(Protocol):
    name: str

    def multiplier(self, config: SchedulerSection) -> float: ...

    def raw(self, host: HostState, placing: Placing) -> float: ...


WEIGHERS: tuple[HostWeigher, ...] = (free_ram, free_vcpu, soft_affinity, soft_anti_affinity)


def weigh(hosts: list[HostState], placing: Placing, config: SchedulerSection) -> list[HostState]:
    """The hosts, best first."""
    totals = [0.0] * len(hosts)
    for weigher in WEIGHERS:
        multiplier = weigher.multiplier(config)
        if not multiplier:
            continue
        values = [weigher.raw(host, placing) for host in hosts]
        low, high = min(values, default=0.0), max(values, default=0.0)
        if high == low:
            continue
        for i, value in enumerate(values):
            totals[i] += multiplier * (value - low) / (high - low)
    order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
    return [hosts[i] for i in order]
