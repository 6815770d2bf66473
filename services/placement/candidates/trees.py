"""Step 1: can a tree plausibly serve a request? Cheap checks, no search.

For every class of the unnamed group some provider of the tree has room
(and none of the forbidden traits); its required traits are somewhere in
the tree; each granular group has one provider that fits it whole. For a
tree of one provider and no granular groups this is exact, so step 2 has
nothing left to search.
"""

from __future__ import annotations

from services.placement.candidates.request import CandidateQuery, Group
from services.placement.capacity_index.state import ProviderNode


def group_fits(provider: ProviderNode, group: Group) -> bool:
    """The provider alone can hold the whole group, with its traits and aggregates."""
    inventories = provider.inventories
    return (
        all(rc in inventories and inventories[rc].fits(n) for rc, n in group.resources.items())
        and group.required <= provider.traits
        and not (group.forbidden & provider.traits)
        and (not group.member_of or not group.member_of.isdisjoint(provider.aggregates))
    )


def may_serve(tree: list[ProviderNode], root: ProviderNode, query: CandidateQuery) -> bool:
    unnamed = query.unnamed
    if len(tree) == 1:
        # The common flat host, checked in one pass: it is the root, so the
        # unnamed group's member_of and (resource-less) traits apply to it too.
        return group_fits(root, unnamed) and all(group_fits(root, g) for g in query.groups)
    if unnamed.member_of and unnamed.member_of.isdisjoint(root.aggregates):
        return False
    if not unnamed.resources:
        # Traits of a resource-less unnamed group apply to the root.
        if not unnamed.required <= root.traits or unnamed.forbidden & root.traits:
            return False
    else:
        for rc, amount in unnamed.resources.items():
            if not any(
                rc in p.inventories
                and p.inventories[rc].fits(amount)
                and not (p.traits & unnamed.forbidden)
                for p in tree
            ):
                return False
        for trait in unnamed.required:
            if not any(trait in p.traits for p in tree):
                return False
    return all(any(group_fits(p, group) for p in tree) for group in query.groups)
