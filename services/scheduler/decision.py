"""What a scheduling decision is made of: the pool of candidate hosts that
requests for the same resources share, each instance's pick, the selections
returned, and the tally of what each step removed (for "no valid host")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.common.errors import StratusError
from services.scheduler.filters import FILTERS
from services.scheduler.host_state import HostState
from services.scheduler.ranking import PoolRanking
from services.scheduler.request import Placing, SchedulingRequest


@dataclass(frozen=True)
class Destination:
    host: str
    address: str
    provider_uuid: str
    allocations: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Selection:
    instance_id: str
    destination: Destination
    alternates: tuple[Destination, ...]


@dataclass
class Tally:
    """What each step removed, for the no-valid-host message."""

    candidates: int = 0
    removed: Counter = field(default_factory=Counter)
    lost_claims: int = 0

    def explain(self, request: SchedulingRequest, instance_id: str) -> str:
        wanted = ", ".join(f"{rc} {n}" for rc, n in sorted(request.resources.items()))
        if not self.candidates:
            traits = ""
            if request.required_traits or request.forbidden_traits:
                traits = (
                    f" with traits {', '.join(request.required_traits) or '-'}"
                    f" and without {', '.join(request.forbidden_traits) or '-'}"
                )
            return f"no host has room for {wanted}{traits}; placement found no candidate"
        reasons = [
            f"{n:,} removed by {name} ({_REASONS[name]})" for name, n in self.removed.most_common()
        ]
        if self.lost_claims:
            reasons.append(f"{self.lost_claims:,} lost to concurrent claims")
        return (
            f"no valid host for instance {instance_id} ({wanted}): "
            f"{self.candidates:,} candidates; " + "; ".join(reasons)
        )


_REASONS = {f.name: f.reason for f in FILTERS}


@dataclass
class Pool:
    """The candidate hosts shared by the requests asking for the same resources."""

    request: SchedulingRequest  # the first of them: resources and traits are the same
    instances: int = 0
    hosts: list[HostState] = field(default_factory=list)
    complete: bool = False  # every candidate there is, not a sample
    error: StratusError | None = None
    ranking: PoolRanking | None = None  # for instances without a group; built on first use


@dataclass
class Pick:
    """An instance's chosen host (ranked[0]) and the rest in rank order, not yet claimed."""

    placing: Placing
    ranked: list[HostState]

    @property
    def host(self) -> HostState:
        return self.ranked[0]


def pool_key(request: SchedulingRequest) -> tuple:
    return (
        tuple(sorted(request.resources.items())),
        tuple(sorted(request.required_traits)),
        tuple(sorted(request.forbidden_traits)),
    )
