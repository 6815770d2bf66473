"""The index's state: every provider as an immutable node, its tree, roots in id order.

Pure and synchronous: the candidate search walks it without awaiting, so a
search sees one consistent state even while writes land between searches.
Nodes are replaced, never mutated (copy on write): a node a search handed
out keeps describing what the search saw.

Generations keep it coherent with the database. Every provider write in the
database bumps the provider's generation, so a node is exact when it carries
the generation its values were read or written at:
  * a full node (read from the database) replaces one of a lower or equal
    generation, never a newer one;
  * a partial change (what this replica just committed: usage, inventories,
    traits or aggregates at generation g) is exact only on top of g - 1. On
    top of anything older it is still newer than what is held, so its values
    are taken, but the node keeps its old generation: the next refresh sees
    the database ahead and reads the whole provider again.

A refresh finds what changed by comparing digests before versions: the
providers are bucketed by id (BUCKET_IDS ids a bucket), and each bucket's
digest is the count and the sums of id, generation, root id and parent id of
its providers. The index keeps its digests up to date as nodes come and go,
the database computes its own in one GROUP BY, and only the providers of
buckets whose digests differ are compared one by one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from services.placement.resources import Inventory

# Ids per digest bucket: 40 digests at 10,000 providers, and a changed
# provider costs the comparison of its bucket's 256 versions.
BUCKET_IDS = 256

# (count, sum of ids, of generations, of root ids, of parent ids (0 for none))
Digest = tuple[int, ...]
Version = tuple[int, int, int | None]  # (generation, root id, parent id)


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class ProviderNode:
    """One provider as the index holds it. Identity equality: a changed
    provider is a new node, so caches may key on the node itself."""

    id: int
    uuid: str
    name: str
    generation: int
    parent_id: int | None
    root_id: int
    inventories: Mapping[str, Inventory]
    traits: frozenset[str] = frozenset()
    aggregates: frozenset[str] = frozenset()


def _with_used(inventory: Inventory, used: int) -> Inventory:
    i = inventory
    return Inventory(
        i.resource_class,
        i.total,
        i.reserved,
        i.min_unit,
        i.max_unit,
        i.step_size,
        i.allocation_ratio,
        used,
    )


class ProviderIndex:
    def __init__(self) -> None:
        self._nodes: dict[int, ProviderNode] = {}
        self._by_uuid: dict[str, int] = {}
        self._members: dict[int, list[int]] = {}  # root id -> ids of its tree, ascending
        self._roots: list[int] = []  # ascending, for windows from a random start
        # Most providers share a handful of trait and aggregate sets: hold each once.
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        # Bumped by every local removal, so a refresh that read the database
        # before the removal does not bring the provider back.
        self.removals = 0
        self._digests: dict[int, list[int]] = {}  # bucket -> Digest, kept as nodes change

    def node(self, provider_id: int) -> ProviderNode | None:
        return self._nodes.get(provider_id)

    def id_of(self, provider_uuid: str) -> int | None:
        return self._by_uuid.get(provider_uuid)

    def tree(self, root_id: int) -> list[ProviderNode]:
        return [self._nodes[i] for i in self._members.get(root_id, ())]

    def roots(self, start: int = 0) -> Iterator[int]:
        """Every root once, from the `start`-th in id order round to the one before."""
        roots = self._roots
        start = start % len(roots) if roots else 0
        yield from roots[start:]
        yield from roots[:start]

    def root_count(self) -> int:
        return len(self._roots)

    def digests(self) -> dict[int, Digest]:
        """Bucket -> digest of the providers held: what a refresh compares first."""
        return {bucket: tuple(digest) for bucket, digest in self._digests.items()}

    def versions(self, buckets: list[int]) -> dict[int, Version]:
        """Provider id -> (generation, root id, parent id) of the providers held in
        these buckets: what a refresh compares where digests differ."""
        versions = {}
        for bucket in buckets:
            for i in range(bucket * BUCKET_IDS, (bucket + 1) * BUCKET_IDS):
                node = self._nodes.get(i)
                if node is not None:
                    versions[i] = (node.generation, node.root_id, node.parent_id)
        return versions

    def put(self, node: ProviderNode) -> None:
        """A provider read whole from the database; kept unless a newer one is held."""
        held = self._nodes.get(node.id)
        if held is not None and held.generation > node.generation:
            return
        node = replace(
            node, traits=self._shared(node.traits), aggregates=self._shared(node.aggregates)
        )
        if held is not None and (held.root_id, held.uuid) != (node.root_id, node.uuid):
            self._unlink(held)
            held = None
        self._replace(node)
        if held is None:
            self._by_uuid[node.uuid] = node.id
            bisect.insort(self._members.setdefault(node.root_id, []), node.id)
            if node.id == node.root_id:
                bisect.insort(self._roots, node.id)

    def change(
        self,
        provider_id: int,
        generation: int,
        *,
        inventories: Mapping[str, Inventory] | None = None,
        used: Mapping[str, int] | None = None,
        traits: frozenset[str] | None = None,
        aggregates: frozenset[str] | None = None,
    ) -> None:
        """What this replica committed on a provider, which took `generation`."""
        held = self._nodes.get(provider_id)
        if held is None or held.generation >= generation:
            return  # unknown here (the next refresh reads it) or already newer
        # Built field by field: dataclasses.replace costs more than the rest
        # of a claim's bookkeeping.
        exact = held.generation == generation - 1  # nothing missed in between
        current = held.inventories if inventories is None else inventories
        if used:
            current = {
                rc: _with_used(inv, used[rc]) if rc in used else inv for rc, inv in current.items()
            }
        self._replace(
            ProviderNode(
                id=held.id,
                uuid=held.uuid,
                name=held.name,
                generation=generation if exact else held.generation,
                parent_id=held.parent_id,
                root_id=held.root_id,
                inventories=current,
                traits=held.traits if traits is None else self._shared(traits),
                aggregates=held.aggregates if aggregates is None else self._shared(aggregates),
            )
        )

    def remove(self, provider_id: int) -> None:
        held = self._nodes.pop(provider_id, None)
        if held is not None:
            self._count(held, -1)
            self._unlink(held)
            self.removals += 1

    def _replace(self, node: ProviderNode) -> None:
        held = self._nodes.get(node.id)
        if held is not None:
            self._count(held, -1)
        self._nodes[node.id] = node
        self._count(node, 1)

    def _count(self, node: ProviderNode, sign: int) -> None:
        """Add a node to its bucket's digest (sign 1) or take it out (-1)."""
        bucket = node.id // BUCKET_IDS
        digest = self._digests.setdefault(bucket, [0, 0, 0, 0, 0])
        digest[0] += sign
        digest[1] += sign * node.id
        digest[2] += sign * node.generation
        digest[3] += sign * node.root_id
        digest[4] += sign * (node.parent_id or 0)
        if not digest[0]:
            del self._digests[bucket]

    def _unlink(self, node: ProviderNode) -> None:
        self._by_uuid.pop(node.uuid, None)
        members = self._members.get(node.root_id, [])
        if node.id in members:
            members.remove(node.id)
        if not members:
            self._members.pop(node.root_id, None)
        if node.id == node.root_id:
            index = bisect.bisect_left(self._roots, node.id)
            if index < len(self._roots) and self._roots[index] == node.id:
                del self._roots[index]

    def _shared(self, values: frozenset[str]) -> frozenset[str]:
        return self._sets.setdefault(frozenset(values), frozenset(values))
