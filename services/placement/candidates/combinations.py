"""Step 2: the exact allocation requests one tree can satisfy."""

from __future__ import annotations

from collections import defaultdict
from itertools import product

from services.placement.candidates.request import CandidateQuery
from services.placement.candidates.trees import group_fits
from services.placement.capacity_index.state import ProviderNode

MAX_PER_TREE = 16
MAX_EXAMINED = 2000


def tree_requests(
    tree: list[ProviderNode], query: CandidateQuery
) -> list[dict[int, dict[str, int]]]:
    """Exact allocation requests one tree can satisfy (provider id -> class -> amount)."""
    unnamed = query.unnamed
    if len(tree) == 1 and not query.groups and unnamed.resources:
        return [{tree[0].id: dict(unnamed.resources)}]  # step 1 was exact for a lone provider
    per_class = []
    for resource_class, amount in unnamed.resources.items():
        options = [
            p
            for p in tree
            if resource_class in p.inventories
            and p.inventories[resource_class].fits(amount)
            and not (p.traits & unnamed.forbidden)
        ]
        if not options:
            return []
        per_class.append(options)
    per_group = []
    for group in query.groups:
        options = [p for p in tree if group_fits(p, group)]
        if not options:
            return []
        per_group.append(options)

    found: list[dict[int, dict[str, int]]] = []
    seen: set[frozenset] = set()
    examined = 0
    classes = list(unnamed.resources.items())
    for unnamed_choice in product(*per_class):
        used_traits = set().union(*(p.traits for p in unnamed_choice))
        if unnamed.resources and not unnamed.required <= used_traits:
            continue
        for group_choice in product(*per_group):
            examined += 1
            if examined > MAX_EXAMINED:
                return found
            if query.isolate and len({p.id for p in group_choice}) < len(group_choice):
                continue
            merged: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            by_id = {}
            for (resource_class, amount), provider in zip(classes, unnamed_choice, strict=True):
                merged[provider.id][resource_class] += amount
                by_id[provider.id] = provider
            for group, provider in zip(query.groups, group_choice, strict=True):
                for resource_class, amount in group.resources.items():
                    merged[provider.id][resource_class] += amount
                by_id[provider.id] = provider
            if not all(
                by_id[pid].inventories[rc].fits(n)
                for pid, amounts in merged.items()
                for rc, n in amounts.items()
            ):
                continue
            key = frozenset(
                (pid, rc, n) for pid, amounts in merged.items() for rc, n in amounts.items()
            )
            if key in seen:
                continue
            seen.add(key)
            found.append({pid: dict(amounts) for pid, amounts in merged.items()})
            if len(found) >= MAX_PER_TREE:
                return found
    return found
