"""What a candidate search asks for and what it answers."""

from __future__ import annotations

from dataclasses import dataclass

from services.placement.capacity_index.state import ProviderNode


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


@dataclass(frozen=True)
class Candidates:
    # Each request: provider id -> resource class -> amount.
    requests: list[dict[int, dict[str, int]]]
    # Every provider of the trees used, as the index held it when asked.
    providers: list[ProviderNode]
