"""A candidate host as the filters and weighers see it.

Built from placement's allocation candidates (what fits, and the free
amounts in the host's tree) joined with the liveness index (which hosts are
alive, their names, addresses and zones). A candidate whose root provider has
no live host behind it keeps host=None: the host-alive filter removes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratus.placement.v1 import allocation_candidates_pb2 as cand_pb


@dataclass
class HostState:
    provider_uuid: str  # the root provider: the host's identity in placement
    name: str  # the provider's name (the host name agents register)
    allocations: dict[str, dict[str, int]]  # provider uuid -> resources, ready to claim
    free: dict[str, int]  # per resource class, over the host's whole tree
    live: dict[str, Any] | None = None  # the liveness value; None when the host is not alive
    claimed: dict[str, int] = field(default_factory=dict)  # by this request, so far

    @property
    def host(self) -> str:
        return self.live["host"] if self.live else self.name

    @property
    def address(self) -> str:
        return self.live.get("address", "") if self.live else ""

    @property
    def availability_zone(self) -> str:
        return self.live.get("availability_zone", "") if self.live else ""

    def free_now(self, resource_class: str) -> int:
        return self.free.get(resource_class, 0) - self.claimed.get(resource_class, 0)

    def take(self, resources: dict[str, int]) -> None:
        for rc, amount in resources.items():
            self.claimed[rc] = self.claimed.get(rc, 0) + amount

    def give_back(self, resources: dict[str, int]) -> None:
        """Undo a take whose instance will not be claimed after all."""
        for rc, amount in resources.items():
            self.claimed[rc] = self.claimed.get(rc, 0) - amount


def host_states(
    answer: cand_pb.ListAllocationCandidatesResponse, live_by_provider: Mapping[str, dict[str, Any]]
) -> list[HostState]:
    """One HostState per host (root provider), first allocation request of each tree."""
    summaries = {s.resource_provider_uuid: s for s in answer.provider_summaries}
    free_by_root: dict[str, dict[str, int]] = {}
    for summary in answer.provider_summaries:
        tree = free_by_root.setdefault(summary.root_uuid, {})
        for rc, res in summary.resources.items():
            tree[rc] = tree.get(rc, 0) + res.capacity - res.used
    hosts: dict[str, HostState] = {}
    for request in answer.allocation_requests:
        first = summaries[request.allocations[0].resource_provider_uuid]
        root = first.root_uuid
        if root in hosts:
            continue
        hosts[root] = HostState(
            provider_uuid=root,
            name=summaries[root].name if root in summaries else first.name,
            allocations={a.resource_provider_uuid: dict(a.resources) for a in request.allocations},
            free=free_by_root[root],
            live=live_by_provider.get(root),
        )
    return list(hosts.values())
