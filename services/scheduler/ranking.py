"""Ranking a shared pool for instances without a server group: a heap, not a re-sort.

A batch of B instances without a group shares a pool of 2B hosts or more
(select.py). Filtering and weighing a window of the pool again for every
instance cost about 0.6 ms of CPU per instance here; instead the pool is
weighed once and kept in a max-heap, each instance pops the best hosts that
pass its filters, and the host it takes is weighed again with what it has
left before it goes back. Work per instance: a few heap operations.

Without a group the group weighers score every host alike, so the order is
the resource weighers' (free RAM, free VCPU). Each weigher's values are
scaled with the pool's range as first weighed; weigh() rescales per call,
but a fixed scale keeps each weigher's order, and the pool's first range is
what a fresh weighing of it would use.
"""

from __future__ import annotations

import heapq
import itertools

from services.common.config import SchedulerSection
from services.scheduler.filters import FILTERS
from services.scheduler.host_state import HostState
from services.scheduler.request import Placing
from services.scheduler.weighers import WEIGHERS


class PoolRanking:
    def __init__(self, hosts: list[HostState], placing: Placing, config: SchedulerSection) -> None:
        self._scales = []
        for weigher in WEIGHERS:
            multiplier = weigher.multiplier(config)
            values = [weigher.raw(host, placing) for host in hosts]
            low, high = min(values, default=0.0), max(values, default=0.0)
            if multiplier and high > low:
                self._scales.append((weigher, multiplier / (high - low), low))
        self._order = itertools.count()  # ties: first weighed first
        self._heap = [self._entry(host, placing) for host in hosts]
        heapq.heapify(self._heap)

    def _entry(self, host: HostState, placing: Placing) -> tuple[float, int, HostState]:
        score = sum(scale * (w.raw(host, placing) - low) for w, scale, low in self._scales)
        return -score, next(self._order), host

    def best(self, placing: Placing, count: int, max_checks: int) -> list[HostState]:
        """Up to `count` hosts that pass every filter for this instance, best first,
        taken out until restore(). None found among the first max_checks: [] (the
        caller then ranks the whole pool, which also says why nothing fits)."""
        chosen: list[HostState] = []
        failed: list[tuple[float, int, HostState]] = []
        while self._heap and len(chosen) < count and len(failed) < max_checks:
            entry = heapq.heappop(self._heap)
            host = entry[2]
            if all(f.passes(host, placing) for f in FILTERS):
                chosen.append(host)
            else:
                failed.append(entry)
        for entry in failed:
            heapq.heappush(self._heap, entry)
        return chosen

    def restore(self, hosts: list[HostState], placing: Placing) -> None:
        """Put back hosts best() took out, weighed with what they have left now."""
        for host in hosts:
            heapq.heappush(self._heap, self._entry(host, placing))
