"""What a candidate search asks for and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.placement.resources import Inventory


@dataclass(frozen=True)
class Group:
    resources: dict[str, int]
    required: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()
    member_of: frozenset[str] = frozenset()
    suffix: str = ""  # empty for the unnamed group


@dataclass(frozen=True)
class CandidateQuery:
    unnamed: Group
    groups: tuple[Group, ...] = ()
    isolate: bool = False
    in_tree: str = ""
    limit: int = 0
    randomize: bool = False


@dataclass
class ProviderInfo:
    id: int
    uuid: str
    name: str
    parent_id: int | None
    root_id: int
    inventories: dict[str, Inventory] = field(default_factory=dict)
    traits: set[str] = field(default_factory=set)
    aggregates: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Candidates:
    # Each request: provider uuid -> resource class -> amount.
    requests: list[dict[str, dict[str, int]]]
    providers: list[ProviderInfo]
