"""The capacity index's state: generations decide which values win."""

from __future__ import annotations

from services.placement.capacity_index.state import ProviderIndex, ProviderNode
from services.placement.resources import Inventory


def node(provider_id: int, generation: int, root_id: int | None = None, used: int = 0, **kw):
    return ProviderNode(
        id=provider_id,
        uuid=f"uuid-{provider_id}",
        name=f"rp-{provider_id}",
        generation=generation,
        parent_id=kw.get("parent_id"),
        root_id=root_id or provider_id,
        inventories={"VCPU": Inventory("VCPU", 8, max_unit=8, used=used)},
        traits=kw.get("traits", frozenset()),
    )


def test_an_older_read_never_replaces_a_newer_node():
    index = ProviderIndex()
    index.put(node(1, 5, used=3))
    index.put(node(1, 4, used=1))
    assert index.node(1).inventories["VCPU"].used == 3
    index.put(node(1, 6, used=2))
    assert index.node(1).inventories["VCPU"].used == 2


def test_a_change_on_top_of_its_previous_generation_is_exact():
    index = ProviderIndex()
    index.put(node(1, 5))
    index.change(1, 6, used={"VCPU": 4})
    assert (index.node(1).generation, index.node(1).inventories["VCPU"].used) == (6, 4)


def test_a_change_after_a_missed_write_keeps_the_old_generation_to_be_read_again():
    # Another replica wrote generation 6; this replica's claim took 7.
    index = ProviderIndex()
    index.put(node(1, 5))
    index.change(1, 7, used={"VCPU": 4})
    assert index.node(1).inventories["VCPU"].used == 4  # newer than what was held
    assert index.node(1).generation == 5  # so a refresh sees the database ahead
    index.change(1, 5, used={"VCPU": 0})  # an older change is ignored
    assert index.node(1).inventories["VCPU"].used == 4


def test_nodes_are_replaced_not_mutated():
    index = ProviderIndex()
    index.put(node(1, 1))
    seen = index.node(1)
    index.change(1, 2, used={"VCPU": 1})
    assert seen.inventories["VCPU"].used == 0
    assert index.node(1) is not seen


def test_roots_wrap_around_from_any_start():
    index = ProviderIndex()
    for provider_id in (3, 1, 2):
        index.put(node(provider_id, 0))
    index.put(node(4, 0, root_id=1, parent_id=1))
    assert list(index.roots()) == [1, 2, 3]
    assert list(index.roots(2)) == [3, 1, 2]
    assert [n.id for n in index.tree(1)] == [1, 4]


def test_a_provider_moved_to_another_tree_leaves_the_old_one():
    index = ProviderIndex()
    index.put(node(1, 0))
    index.put(node(2, 0))
    index.put(node(2, 1, root_id=1, parent_id=1))
    assert list(index.roots()) == [1]
    assert [n.id for n in index.tree(1)] == [1, 2]
    assert index.tree(2) == []


def test_removal_forgets_the_provider_everywhere():
    index = ProviderIndex()
    index.put(node(1, 0))
    index.put(node(2, 0, root_id=1, parent_id=1))
    index.remove(2)
    assert [n.id for n in index.tree(1)] == [1]
    assert index.id_of("uuid-2") is None
    assert index.removals == 1


def test_identical_trait_sets_are_held_once():
    index = ProviderIndex()
    index.put(node(1, 0, traits=frozenset({"HW_CPU_X86_AVX2"})))
    index.put(node(2, 0, traits=frozenset({"HW_CPU_X86_AVX2"})))
    assert index.node(1).traits is index.node(2).traits


def test_digests_follow_every_put_change_and_removal():
    index = ProviderIndex()
    for i in (1, 2, 300):
        index.put(node(i, 0))
    index.put(node(3, 1, root_id=1, parent_id=1))
    index.change(2, 1, used={"VCPU": 2})
    index.put(node(3, 2, root_id=300, parent_id=300))  # moved to another tree
    index.remove(1)
    fresh = ProviderIndex()
    for i in (2, 3, 300):
        fresh.put(index.node(i))
    assert index.digests() == fresh.digests()
    assert index.digests()[0] == (2, 2 + 3, 1 + 2, 2 + 300, 300)
    assert index.versions([1]) == {300: (0, 300, None)}
